"""The one exception type users see.

Anything a user can fix (a bad architecture, a missing file, an unknown task, nothing cached while
offline) raises `ElasticLMError` with a one-line message that names the file/field and says what to
do. It subclasses `ValueError` so library callers can catch either; the CLI prints it as
`elasticlm: error: <message>` and exits with status 2.
"""


class ElasticLMError(ValueError):
    """A user-fixable problem, described in one line."""

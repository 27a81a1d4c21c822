"""The `elasticlm` command groups; each module exposes `register(subparsers)` (see `elasticlm.cli`).

    space.py     elasticlm space            inspect presets, sample and count architectures
    data.py      elasticlm data             fetch and show corpora and tasks
    teacher.py   elasticlm teacher          fetch, show, list and fine-tune teachers
    supernet.py  elasticlm supernet         pretrain and fine-tune the supernet
    config.py    elasticlm config           dump a preset's run config (configs/*.yaml)
    options.py   (no command)               flags made from config fields; the KEY=VALUE-anywhere parser

Library modules never import these; a command parses, builds a config, makes one call, prints.
"""

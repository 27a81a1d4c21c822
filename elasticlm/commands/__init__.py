"""The `elasticlm` command groups; each module exposes `register(subparsers)` (see `elasticlm.cli`).

    space.py     elasticlm space            inspect presets, sample and count architectures
    data.py      elasticlm data             fetch and show corpora and tasks
    teacher.py   elasticlm teacher          fetch, show, list and fine-tune teachers
    supernet.py  elasticlm supernet         pretrain and fine-tune the supernet

Library modules never import these; a command parses, builds a config, makes one call, prints.
"""

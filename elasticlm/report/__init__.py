"""The run report: `report.md` with PNG figures and tables, drawn from a run folder's files only.

    from elasticlm.report import write_report
    write_report("runs/demo")            # -> runs/demo/report.md, figures in runs/demo/report/

Modules: `files` (lenient readers), `plots` (growth, PCA, head CKA, block similarity), `searchplots`
(architecture, search progress, Pareto front), `tables` (results with win/loss sentences, ablation,
per-layer tables), `facts` (what the run cost), `render` (the sections and `write_report`).
Nothing here imports torch or transformers, and no training code imports this package.
"""

from elasticlm.report.render import write_report

__all__ = ["write_report"]

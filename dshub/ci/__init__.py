"""Job logic of the dshub CI/CD components (`dshub ci push | gc | validate | publish`).

Each job is a plain function taking an explicit environment mapping, so it is testable
without a pipeline; `dshub/ci/cli.py` is the thin command-line edge.
"""

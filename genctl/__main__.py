"""`python -m genctl ...`: the CLI without the console script (a source checkout on PYTHONPATH,
such as the GPU machines, where genctl is not pip-installed)."""
from genctl.cli.main import run

run()

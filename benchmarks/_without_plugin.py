"""Snakemake run as an environment without the SLURM executor plugin would run it.

The plugin is an optional extra (`slurm`). The dry-run benchmark times Snakemake
without it, and a test checks what the SLURM profile tells a user who lacks it,
whether or not this environment has it installed: ``python -c WITHOUT_PLUGIN
<snakemake args>`` hides the plugin from Snakemake's plugin registry (which
lists modules with ``pkgutil.iter_modules``) and from imports.
"""

PLUGIN = "snakemake_executor_plugin_slurm"

WITHOUT_PLUGIN = f"""
import pkgutil, sys
_modules = pkgutil.iter_modules
pkgutil.iter_modules = lambda *a, **k: (m for m in _modules(*a, **k) if m.name != {PLUGIN!r})
sys.modules[{PLUGIN!r}] = None
sys.argv[0] = "snakemake"
from snakemake.cli import main
main()
"""

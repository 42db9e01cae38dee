"""emomucs file for ensuring the package is executable
as `emomucs` and `python -m emomucs`
"""

import os
import sys
from pathlib import Path
from typing import Any


def main(*args, **kwargs) -> Any:
    package_name = Path(__file__).parent.name
    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    argv = list(args[0]) if args else sys.argv[1:]
    if argv[:1] == ["predict"]:
        # `emomucs predict ...`, the project command `kedro predict` runs too. Its
        # logs go to stderr (set before Kedro configures logging on import), so the
        # results on stdout stay machine-readable.
        os.environ.setdefault(
            "KEDRO_LOGGING_CONFIG", str(Path(__file__).with_name("predict_logging.yml"))
        )
        from kedro.framework.project import configure_project

        from emomucs.cli import predict

        configure_project(package_name)
        return predict.main(argv[1:], prog_name="emomucs predict", **kwargs)

    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    configure_project(package_name)
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()

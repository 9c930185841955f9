"""`python -m dyssect_ctrl` is `dyssect-ctrl`."""

from dyssect_ctrl.cli import main

raise SystemExit(main())

import sys

from dyssect_ctrl.traffic.cli import main

sys.exit(main())

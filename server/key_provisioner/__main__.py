from __future__ import annotations

import sys

from key_provisioner.cli import main

sys.exit(main())

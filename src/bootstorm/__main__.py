import sys

from bootstorm.cli import main

sys.exit(main())

import sys

from cifar_mtl.cli import main

sys.exit(main())

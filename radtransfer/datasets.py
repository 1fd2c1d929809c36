"""``import radtransfer.datasets`` as a module path: the module ``radtransfer.data.synthetic``
(the synthetic demo data) itself, under the name radtransfer 0.1 gave it.

Importing this file puts that module in its place in ``sys.modules``, so the two names are one module object
(``radtransfer.datasets`` as an attribute gives it too, through ``radtransfer._EXPORTS``).
"""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("radtransfer.data.synthetic")

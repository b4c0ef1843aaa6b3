"""Commands that run the algorithms (``dirtyrl graph``, ``dirtyrl play``): clients of algos/,
like cli.py and the doctor. The instruments in debug/ never import from here."""

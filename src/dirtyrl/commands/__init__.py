"""Commands that run the algorithms (``dirtyrl graph``, ``play``, ``report``): clients of algos/,
like cli.py and the doctor. The instruments in debug/ never import from here."""

import os

# One thread per test process: the suite shares two cores, and the maths is tiny.
os.environ.setdefault("OMP_NUM_THREADS", "1")

"""What only development uses: the whole system as local processes (``make up``, the benchmark
and the tests). The images do not carry it."""

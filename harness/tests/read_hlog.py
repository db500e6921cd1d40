"""Reads a stackbench .hlog with the independent HdrHistogram implementation from PyPI
(package `hdrhistogram`). Prints "intervals total min max p50" on the first line, then one
"value count" line per recorded value."""
import sys

try:
    from hdrh.histogram import HdrHistogram
    from hdrh.log import HistogramLogReader
except ImportError:
    sys.exit("the PyPI package hdrhistogram is missing: run scripts/setup.sh (or pip install hdrhistogram)")

ref = HdrHistogram(1, 600_000_000, 3)
reader = HistogramLogReader(sys.argv[1], ref)
total = HdrHistogram(1, 600_000_000, 3)
intervals = 0
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    total.add(h)
    intervals += 1
print(intervals, total.get_total_count(), total.get_min_value(), total.get_max_value(),
      total.get_value_at_percentile(50))
for item in total.get_recorded_iterator():
    print(item.value_iterated_to, item.count_at_value_iterated_to)

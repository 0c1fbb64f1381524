"""issue 13: the demo in the literal dialect (the API document's other answer forms) must
write exactly the rows the enveloped demo writes: the same seed serves the same data."""
import json
import sys

a, b = (json.load(open(p))["tables"] for p in sys.argv[1:3])
bad = [t for t in sorted(set(a) | set(b)) if a.get(t, {}).get("rows") != b.get(t, {}).get("rows")]
for t in sorted(set(a) | set(b)):
    print(f"{t:<30} {a.get(t, {}).get('rows')!s:>8} {b.get(t, {}).get('rows')!s:>8}")
if bad or not a:
    sys.exit(f"row counts differ between the dialects: {bad}")
print("the same rows in both dialects")

sandbox run --no-net --meta owner=quickstart -- python3 -c '
import platform
print(f"hello from Python {platform.python_version()} in {platform.node()}")
print("sum of squares 1..100 =", sum(i * i for i in range(1, 101)))
'
echo "exit code $?"

"""``python -m streamrec.bench [e2e|topk|plot|baseline] ...`` (the same as ``streamrec bench``)."""

from streamrec.bench.cli import bench

if __name__ == "__main__":
    bench(prog_name="python -m streamrec.bench")

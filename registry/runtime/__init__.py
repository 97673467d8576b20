"""A small Linux-namespace runtime: pull an image, unpack it once, run it in namespaces with cgroup limits."""

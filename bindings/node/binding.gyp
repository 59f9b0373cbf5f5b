{
  "targets": [
    {
      "target_name": "sandbox",
      "sources": ["src/addon.c", "src/convert.c", "src/forkguard.c", "src/proc.c", "src/work.c"],
      "include_dirs": ["<!(node -p \"process.env.SANDBOX_INCLUDEDIR || ''\")"],
      "libraries": ["<!@(node -p \"process.env.SANDBOX_LIBS || '-lsandbox'\")"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE"]
    }
  ]
}

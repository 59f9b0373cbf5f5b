{
  "targets": [
    {
      "target_name": "sandbox",
      "sources": ["src/addon.c", "src/convert.c", "src/files.c", "src/forkguard.c", "src/proc.c", "src/work.c"],
      "defines": ["NAPI_VERSION=8"],
      # the installed library through pkg-config; SANDBOX_CFLAGS and
      # SANDBOX_LIBS point at an uninstalled one (tests/node.sh)
      "cflags_c": [
        "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
        "<!@(sh -c 'echo ${SANDBOX_CFLAGS-$(pkg-config --cflags libsandbox)}')"
      ],
      "libraries": ["<!@(sh -c 'echo ${SANDBOX_LIBS-$(pkg-config --libs libsandbox)}')"]
    }
  ]
}

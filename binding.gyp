{
  "targets": [
    {
      "target_name": "bpf_objects",
      "type": "none",
      "actions": [
        {
          "action_name": "compile_bpf",
          "inputs": [
            "bpf/build.sh",
            "<!@(ls bpf/*.bpf.c bpf/include/*.h)"
          ],
          "outputs": ["<(module_root_dir)/build/bpf/objects.gen.h"],
          "action": ["bash", "bpf/build.sh", "<(module_root_dir)/build/bpf"]
        }
      ]
    },
    {
      "target_name": "strata_native",
      "dependencies": ["bpf_objects"],
      "sources": ["native/src/addon.cc", "native/src/probes.cc", "native/src/pump.cc", "native/src/features.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(module_root_dir)/build/bpf",
        "<(module_root_dir)/bpf/include"
      ],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-unused-parameter"],
      "libraries": ["-lbpf", "-lelf", "-lz", "-lpthread"]
    }
  ]
}

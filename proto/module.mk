# proto/: protobuf-c code generated at build time (added as it lands)

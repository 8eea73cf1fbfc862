package bundlepub

// DecodeConfigMap exposes decodeConfigMap to the fuzz test.
var DecodeConfigMap = decodeConfigMap

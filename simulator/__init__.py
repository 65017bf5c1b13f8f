"""The hardware simulator: device models, fault injection, and servers that speak the same
wire protocols as real equipment. It shares the codecs in `drivers` and never imports
`gateway`."""

"""What a proxied answer may weigh: what API Gateway and Lambda can carry back, with room to spare.

A Lambda answers API Gateway with at most 6 MB (6,291,456 bytes) of JSON; the proxy's body travels in it
base64-encoded (any bytes, any encoding, as the provider sent them), which takes four bytes for every three. What
is left after the headers and the JSON around them is the body's limit; a larger answer is refused whole
(``response_too_large``), never cut short.
"""

LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024
MAX_RESPONSE_HEADER_BYTES = 32 * 1024
"""The response headers the proxy passes on, as JSON (``json.dumps``, escapes and all); more is
``response_too_large`` too."""
ENVELOPE_BYTES = MAX_RESPONSE_HEADER_BYTES + 32 * 1024
"""The headers plus the JSON around them (status, key names, escaping), generously."""
MAX_RESPONSE_BODY_BYTES = (LAMBDA_RESPONSE_BYTES - ENVELOPE_BYTES) // 4 * 3
"""4,669,440 bytes: the largest body whose base64 form still fits."""

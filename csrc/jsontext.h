/* The pieces of writing JSON strings that json.c's writer and shape.c's bodies share, so the
 * two accept the same UTF-8 and write the same escapes (shape.c must write json_encode's bytes). */
#ifndef PAYKIT_JSONTEXT_H
#define PAYKIT_JSONTEXT_H

#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence at s (n bytes available), or 0. Strict RFC 3629:
 * no overlong forms, no surrogates (U+D800-DFFF), nothing above U+10FFFF. */
static inline size_t paykit_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

/* The escape of an ASCII byte that is not written as it is ('"', '\\', a control character):
 * its short form (\n, \t, ...) or \u00XX, into esc; returns its length (2 or 6). */
static inline size_t paykit_json_escape(unsigned char c, char esc[6])
{
    static const char hex[] = "0123456789abcdef";
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; return 2;
    case '\\': esc[1] = '\\'; return 2;
    case '\b': esc[1] = 'b'; return 2;
    case '\f': esc[1] = 'f'; return 2;
    case '\n': esc[1] = 'n'; return 2;
    case '\r': esc[1] = 'r'; return 2;
    case '\t': esc[1] = 't'; return 2;
    default:
        esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
        return 6;
    }
}

#endif

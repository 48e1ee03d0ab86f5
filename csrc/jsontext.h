/* The pieces of writing JSON strings that json.c's writer and shape.c's bodies share, so the
 * two accept the same UTF-8 and write the same escapes (shape.c must write json_encode's bytes). */
#ifndef PAYKIT_JSONTEXT_H
#define PAYKIT_JSONTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Word-at-a-time tests of 8 bytes (the classic "has a byte less than n" and "has a zero byte"
 * tests, which never miss a byte; a word they flag may still be plain, and its bytes are then
 * looked at one by one by the caller's byte table, so the answer is the table's). */
#define PAYKIT_W_ONES 0x0101010101010101ULL
#define PAYKIT_W_HIGH 0x8080808080808080ULL

/* The high bits of the bytes of w that may be below 0x20, '"' or '\\'. */
static inline uint64_t paykit_word_marks(uint64_t w)
{
    uint64_t q = w ^ (PAYKIT_W_ONES * '"'), bs = w ^ (PAYKIT_W_ONES * '\\');
    return ((w - PAYKIT_W_ONES * 0x20) & ~w) | ((q - PAYKIT_W_ONES) & ~q) | ((bs - PAYKIT_W_ONES) & ~bs);
}

/* The index of the first byte from i on (n bytes in all) that is not 0x20-0x7F but '"' and
 * '\\' (plain[] the same test byte by byte; no_del: 0x7F not plain either). 8 bytes at a
 * time while 8 are left: in a flagged word the lowest flagged byte is a true one (a borrow
 * or carry only goes up from a true one), so with little-endian loads it is the first. */
static inline size_t paykit_plain_run(const unsigned char *s, size_t i, size_t n, const unsigned char *plain,
                                      int no_del)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (i + 8 <= n) {
        uint64_t w, m;
        memcpy(&w, s + i, 8);
        m = paykit_word_marks(w) | w;
        if (no_del) m |= w + PAYKIT_W_ONES;
        m &= PAYKIT_W_HIGH;
        if (m) return i + ((size_t)__builtin_ctzll(m) >> 3);
        i += 8;
    }
#endif
    while (i < n && plain[s[i]]) i++;
    return i;
}

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

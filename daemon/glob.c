/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"

_Static_assert(GLOB_PATTERN_MAX < INT32_MAX / 2, "pattern offsets are ints");

/* The pattern is compiled into one token per starting byte and then run as an NFA whose states
 * are pattern offsets. A brace alternative ends by jumping behind its '}', so a state needs no
 * stack of pending continuations, and following all states at once keeps "*a*a*a*b" or
 * "{a,a}{a,a}..." at O(pattern x name) where backtracking would be exponential. */

enum {
        T_LIT,   /* aux: the character (-1 for '/', which no name holds); link: next token */
        T_ANY,
        T_STAR,
        T_CLASS, /* link: behind its ']' */
        T_OPEN,  /* link: the first ',' or the '}' */
        T_SEP,   /* link: the next ',' or the '}'; aux: the '}' */
        T_CLOSE,
        T_NEG,   /* link: index into Glob.negs */
};

typedef struct Neg {
        int body, body_end; /* body_end is the closing ')' */
        int cont;           /* where the enclosing (sub)pattern ends */
        uint64_t **rows;    /* rows[i], computed on demand: bit j set when the body matches
                             * name[i..j) */
} Neg;

typedef struct Glob {
        const char *pattern;
        int len;
        /* All NULL when only validating. */
        uint8_t *kind;
        int32_t *link, *aux;
        Neg *negs;
        int n_negs, cap_negs;
        const unsigned char *name;
        size_t name_len;
} Glob;

/* A byte that does not start a valid UTF-8 sequence is a character of its own, placed past
 * the code points so it never equals a decoded one. */
#define RAW_BYTE 0x110000

static int32_t utf8_char(const unsigned char *s, size_t n, size_t *ret_len) {
        unsigned c = s[0], lo = 0x80, hi = 0xbf;
        size_t len;
        int32_t cp;

        *ret_len = 1;
        if (c < 0x80)
                return c;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                /* No overlong forms, no surrogates. */
                len = 3;
                cp = c & 0x0f;
                if (c == 0xe0)
                        lo = 0xa0;
                else if (c == 0xed)
                        hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                /* No overlong forms, nothing past U+10FFFF. */
                len = 4;
                cp = c & 0x07;
                if (c == 0xf0)
                        lo = 0x90;
                else if (c == 0xf4)
                        hi = 0x8f;
        } else
                return RAW_BYTE + c;
        if (n < len)
                return RAW_BYTE + c;
        for (size_t i = 1; i < len; i++) {
                if (s[i] < lo || s[i] > hi)
                        return RAW_BYTE + c;
                cp = cp << 6 | (s[i] & 0x3f);
                lo = 0x80;
                hi = 0xbf;
        }
        *ret_len = len;
        return cp;
}

static int32_t pattern_char(const char *s, int *i, int limit) {
        size_t len;
        int32_t c = utf8_char((const unsigned char *) s + *i, limit - *i, &len);

        *i += len;
        return c;
}

/* One member of a class at *i, '\' escaping the next character. */
static int32_t class_char(const char *s, int *i, int limit) {
        if (s[*i] == '\\')
                (*i)++;
        if (*i >= limit)
                return -EINVAL;
        return pattern_char(s, i, limit);
}

/* Scans the class whose '[' is at q. Returns the offset behind its ']', -EINVAL when it is
 * not closed before limit; *ret_match (if wanted) tells whether c is a member. */
static int class_scan(const char *s, int q, int limit, int32_t c, bool *ret_match) {
        bool negate = false, match = false;
        int i = q + 1;

        if (i < limit && (s[i] == '!' || s[i] == '^')) {
                negate = true;
                i++;
        }
        /* POSIX: a ']' first in the class is a member, not its end. */
        for (bool first = true;; first = false) {
                int32_t lo, hi;

                if (i >= limit)
                        return -EINVAL;
                if (s[i] == ']' && !first)
                        break;
                lo = hi = class_char(s, &i, limit);
                if (lo < 0)
                        return lo;
                if (i + 1 < limit && s[i] == '-' && s[i + 1] != ']') {
                        i++;
                        hi = class_char(s, &i, limit);
                        if (hi < 0)
                                return hi;
                }
                /* A reversed range like z-a is empty rather than malformed. */
                if (c >= lo && c <= hi)
                        match = true;
        }
        if (ret_match)
                *ret_match = match != negate;
        return i + 1;
}

/* A leading globstar and slash stand for any number of directories in front of the name, and
 * a base name has none, so they are dropped. */
static int skip_globstar(const char *s, int p, int limit) {
        while (limit - p >= 3 && memcmp(s + p, "**/", 3) == 0)
                p += 3;
        return p;
}

/* Where the (sub)pattern starting at p ends: at limit, or in braces at the first ',' or '}' of
 * its own level. *ret_last is the offset of its last token on that level, -1 when empty. Only
 * looks, so a negation can learn its extent before its body is parsed (once). */
static int skim(const char *s, int p, int limit, bool in_brace, int *ret_last) {
        int level = 0, last = -1;

        while (p < limit) {
                char c = s[p];

                if (level == 0) {
                        if (in_brace && (c == ',' || c == '}'))
                                break;
                        last = p;
                }
                if (c == '\\') {
                        if (++p >= limit)
                                return -EINVAL;
                        (void) pattern_char(s, &p, limit);
                } else if (c == '[') {
                        p = class_scan(s, p, limit, -1, NULL);
                        if (p < 0)
                                return p;
                } else {
                        if (c == '{')
                                level++;
                        else if (c == '}' && level > 0)
                                level--;
                        p++;
                }
        }
        *ret_last = last;
        return p;
}

static void emit(Glob *g, int q, uint8_t kind, int32_t link, int32_t aux) {
        if (!g->kind)
                return;
        g->kind[q] = kind;
        g->link[q] = link;
        g->aux[q] = aux;
}

static int parse_seq(Glob *g, int p, int limit, bool in_brace, int depth, bool top);

/* "!(" at p starts a (sub)pattern, which must end right behind the matching ')'. */
static int parse_neg(Glob *g, int p, int limit, bool in_brace, int depth) {
        const char *s = g->pattern;
        int end, last, body, r;

        if (depth >= GLOB_DEPTH_MAX)
                return -EINVAL;
        end = skim(s, p + 2, limit, in_brace, &last);
        if (end < 0)
                return end;
        if (last < 0 || last != end - 1 || s[last] != ')')
                return -EINVAL;
        body = skip_globstar(s, p + 2, end - 1);
        r = parse_seq(g, body, end - 1, in_brace, depth + 1, false);
        if (r < 0)
                return r;
        if (g->kind) {
                if (g->n_negs == g->cap_negs) {
                        int cap = g->cap_negs ? 2 * g->cap_negs : 4;
                        Neg *n = realloc(g->negs, cap * sizeof *n);

                        if (!n)
                                return -ENOMEM;
                        g->negs = n;
                        g->cap_negs = cap;
                }
                g->negs[g->n_negs] = (Neg) { .body = body, .body_end = end - 1, .cont = end };
                emit(g, p, T_NEG, g->n_negs++, 0);
        }
        return end;
}

/* The '{' at open; returns the offset behind its '}'. */
static int parse_braces(Glob *g, int open, int limit, int depth) {
        int prev = open, sep;

        if (depth >= GLOB_DEPTH_MAX)
                return -EINVAL;
        for (;;) {
                sep = parse_seq(g, prev + 1, limit, true, depth + 1, false);
                if (sep < 0)
                        return sep;
                if (sep >= limit)
                        return -EINVAL; /* never closed */
                emit(g, prev, prev == open ? T_OPEN : T_SEP, sep, 0);
                if (g->pattern[sep] == '}')
                        break;
                prev = sep;
        }
        emit(g, sep, T_CLOSE, sep + 1, 0);
        if (g->kind)
                for (int x = g->link[open]; x != sep; x = g->link[x])
                        g->aux[x] = sep;
        return sep + 1;
}

/* A (sub)pattern from p: the whole pattern (top), a brace alternative or a negation body.
 * Returns where it ends, see skim(). */
static int parse_seq(Glob *g, int p, int limit, bool in_brace, int depth, bool top) {
        const char *s = g->pattern;

        if (p < limit && s[p] == '!') {
                if (p + 1 < limit && s[p + 1] == '(')
                        return parse_neg(g, p, limit, in_brace, depth);
                if (top)
                        return -EINVAL;
        }
        while (p < limit) {
                int q = p, r;
                int32_t c;

                switch (s[p]) {
                case ',':
                case '}':
                        if (in_brace)
                                return p;
                        break;
                case '\\':
                        if (++q >= limit)
                                return -EINVAL;
                        break;
                case '*':
                        emit(g, p, T_STAR, p + 1, 0);
                        p++;
                        continue;
                case '?':
                        emit(g, p, T_ANY, p + 1, 0);
                        p++;
                        continue;
                case '[':
                        r = class_scan(s, p, limit, -1, NULL);
                        if (r < 0)
                                return r;
                        emit(g, p, T_CLASS, r, 0);
                        p = r;
                        continue;
                case '{':
                        r = parse_braces(g, p, limit, depth);
                        if (r < 0)
                                return r;
                        p = r;
                        continue;
                default:
                        break;
                }
                c = pattern_char(s, &q, limit);
                emit(g, p, T_LIT, q, c == '/' ? -1 : c);
                p = q;
        }
        return p;
}

static void glob_done(Glob *g) {
        for (int k = 0; k < g->n_negs; k++) {
                if (g->negs[k].rows)
                        for (size_t i = 0; i <= g->name_len; i++)
                                free(g->negs[k].rows[i]);
                free(g->negs[k].rows);
        }
        free(g->negs);
        free(g->kind);
        free(g->link);
        free(g->aux);
}

/* Returns the offset matching starts at, or a negative errno. */
static int glob_compile(Glob *g, const char *pattern, bool record) {
        size_t len;
        int start, r;

        if (!pattern)
                return -EINVAL;
        len = strnlen(pattern, GLOB_PATTERN_MAX + 1);
        if (len > GLOB_PATTERN_MAX)
                return -EINVAL;
        g->pattern = pattern;
        g->len = len;
        if (record) {
                g->kind = calloc(len + 1, sizeof *g->kind);
                g->link = calloc(len + 1, sizeof *g->link);
                g->aux = calloc(len + 1, sizeof *g->aux);
                if (!g->kind || !g->link || !g->aux)
                        return -ENOMEM;
        }
        start = skip_globstar(pattern, 0, len);
        r = parse_seq(g, start, len, false, 0, true);
        return r < 0 ? r : start;
}

int glob_validate(const char *pattern) {
        Glob g = {};
        int r = glob_compile(&g, pattern, false);

        return r < 0 ? r : 0;
}

/* ---- matching ---- */

static bool bit_get(const uint64_t *b, size_t i) {
        return b[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *b, size_t i) {
        b[i / 64] |= UINT64_C(1) << (i % 64);
}

static size_t bit_words(size_t n) {
        return (n + 63) / 64;
}

/* Pattern offsets in [Run.start, Run.end]; the list holds each member once, in order. */
typedef struct Set {
        uint64_t *bits;
        int *list, n;
} Set;

typedef struct Run {
        Glob *g;
        int start, end;
        /* Negations entered so far: from each, the enclosing (sub)pattern continues at every
         * later offset the body does not reach. */
        struct {
                int neg;
                const uint64_t *row;
        } *acts;
        size_t n_acts, cap_acts;
} Run;

static void set_add(Set *set, const Run *r, int q) {
        if (bit_get(set->bits, q - r->start))
                return;
        bit_set(set->bits, q - r->start);
        set->list[set->n++] = q;
}

static void set_clear(Set *set, const Run *r) {
        for (int i = 0; i < set->n; i++)
                set->bits[(set->list[i] - r->start) / 64] = 0;
        set->n = 0;
}

static int run(Glob *g, int start, int end, size_t from, uint64_t *acc);

static int neg_row(Glob *g, int k, size_t at, const uint64_t **ret) {
        Neg *n = &g->negs[k];

        if (!n->rows) {
                n->rows = calloc(g->name_len + 1, sizeof *n->rows);
                if (!n->rows)
                        return -ENOMEM;
        }
        if (!n->rows[at]) {
                uint64_t *row = calloc(bit_words(g->name_len + 1), sizeof *row);
                int r;

                if (!row)
                        return -ENOMEM;
                r = run(g, n->body, n->body_end, at, row);
                if (r < 0) {
                        free(row);
                        return r;
                }
                n->rows[at] = row;
        }
        *ret = n->rows[at];
        return 0;
}

/* Adds what set reaches without consuming a character at name offset pos. */
static int closure(Run *r, Set *set, size_t pos) {
        Glob *g = r->g;

        /* set->n grows while this runs: newly reached states are expanded too. */
        for (int i = 0; i < set->n; i++) {
                int q = set->list[i], k;
                const uint64_t *row;

                if (q == r->end)
                        continue;
                switch (g->kind[q]) {
                case T_STAR:
                case T_CLOSE:
                        set_add(set, r, q + 1);
                        break;
                case T_OPEN:
                        set_add(set, r, q + 1);
                        for (int x = g->link[q]; g->kind[x] == T_SEP; x = g->link[x])
                                set_add(set, r, x + 1);
                        break;
                case T_SEP:
                        set_add(set, r, g->aux[q]);
                        break;
                case T_NEG:
                        k = neg_row(g, g->link[q], pos, &row);
                        if (k < 0)
                                return k;
                        if (r->n_acts == r->cap_acts) {
                                size_t cap = r->cap_acts ? 2 * r->cap_acts : 4;
                                void *a = realloc(r->acts, cap * sizeof *r->acts);

                                if (!a)
                                        return -ENOMEM;
                                r->acts = a;
                                r->cap_acts = cap;
                        }
                        r->acts[r->n_acts].neg = g->link[q];
                        r->acts[r->n_acts++].row = row;
                        if (!bit_get(row, pos))
                                set_add(set, r, g->negs[g->link[q]].cont);
                        break;
                default:
                        break;
                }
        }
        return 0;
}

/* Runs pattern[start..end) over the name from offset from; sets bit j of acc for every j where
 * it matches name[from..j). */
static int run(Glob *g, int start, int end, size_t from, uint64_t *acc) {
        size_t states = end - start + 1, words = bit_words(states), pos = from;
        uint64_t *bits = calloc(2 * words, sizeof *bits);
        int *lists = calloc(2 * states, sizeof *lists);
        Run r = { .g = g, .start = start, .end = end };
        Set sets[2], *cur = &sets[0], *next = &sets[1];
        int k = -ENOMEM;

        if (!bits || !lists)
                goto out;
        sets[0] = (Set) { .bits = bits, .list = lists };
        sets[1] = (Set) { .bits = bits + words, .list = lists + states };
        set_add(cur, &r, start);
        k = closure(&r, cur, pos);
        while (k >= 0) {
                Set *t;
                size_t len;
                int32_t c;

                if (bit_get(cur->bits, end - start))
                        bit_set(acc, pos);
                if (pos == g->name_len || (cur->n == 0 && r.n_acts == 0))
                        break;
                c = utf8_char(g->name + pos, g->name_len - pos, &len);
                for (int i = 0; i < cur->n; i++) {
                        int q = cur->list[i];
                        bool m;

                        if (q == end)
                                continue;
                        switch (g->kind[q]) {
                        case T_LIT:
                                if (g->aux[q] == c)
                                        set_add(next, &r, g->link[q]);
                                break;
                        case T_ANY:
                                set_add(next, &r, q + 1);
                                break;
                        case T_STAR:
                                set_add(next, &r, q);
                                break;
                        case T_CLASS:
                                (void) class_scan(g->pattern, q, g->len, c, &m);
                                if (m)
                                        set_add(next, &r, g->link[q]);
                                break;
                        default:
                                break;
                        }
                }
                pos += len;
                for (size_t a = 0; a < r.n_acts; a++)
                        if (!bit_get(r.acts[a].row, pos))
                                set_add(next, &r, g->negs[r.acts[a].neg].cont);
                k = closure(&r, next, pos);
                set_clear(cur, &r);
                t = cur;
                cur = next;
                next = t;
        }
out:
        free(bits);
        free(lists);
        free(r.acts);
        return k < 0 ? k : 0;
}

int glob_match(const char *pattern, const char *name) {
        Glob g = {};
        uint64_t *acc = NULL;
        int start, r;

        start = glob_compile(&g, pattern, true);
        if (start < 0) {
                r = start;
                goto out;
        }
        if (!name) {
                r = -EINVAL;
                goto out;
        }
        g.name = (const unsigned char *) name;
        g.name_len = strlen(name);
        acc = calloc(bit_words(g.name_len + 1), sizeof *acc);
        if (!acc) {
                r = -ENOMEM;
                goto out;
        }
        r = run(&g, start, g.len, 0, acc);
        if (r >= 0)
                r = bit_get(acc, g.name_len);
out:
        free(acc);
        glob_done(&g);
        return r;
}

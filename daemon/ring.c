/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h"

void ring_init(Ring *r, size_t max) {
        *r = (Ring) { .max = max };
}

static void ring_drop_oldest(Ring *r) {
        RingChunk *c = r->slots[r->first];

        r->used -= RING_CHUNK_COST(c->size);
        free(c);
        r->slots[r->first] = NULL;
        r->first = (r->first + 1) & (r->capacity - 1);
        r->count--;
        r->truncated = true;
}

void ring_clear(Ring *r) {
        for (size_t i = 0; i < r->count; i++)
                free(r->slots[(r->first + i) & (r->capacity - 1)]);
        free(r->slots);
        r->slots = NULL;
        r->capacity = r->first = r->count = r->used = 0;
}

static int ring_grow(Ring *r) {
        size_t n = r->capacity ? r->capacity * 2 : 16;
        RingChunk **s = malloc(n * sizeof *s);

        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < r->count; i++)
                s[i] = r->slots[(r->first + i) & (r->capacity - 1)];
        free(r->slots);
        r->slots = s;
        r->capacity = n;
        r->first = 0;
        return 0;
}

int ring_append(Ring *r, uint8_t stream, const void *data, size_t size, uint64_t *ret_seq) {
        RingChunk *c;
        int k;

        if (size == 0 || size > UINT32_MAX)
                return -EINVAL;
        if (r->count == r->capacity) {
                k = ring_grow(r);
                if (k < 0)
                        return k;
        }
        c = malloc(sizeof *c + size);
        if (!c)
                return -ENOMEM;
        c->seq = r->next_seq++;
        c->offset = r->total_bytes;
        c->size = (uint32_t) size;
        c->stream = stream;
        memcpy(c->data, data, size);

        r->slots[(r->first + r->count) & (r->capacity - 1)] = c;
        r->count++;
        r->used += RING_CHUNK_COST(size);
        r->total_bytes += size;

        /* The newest chunk always stays, even if it alone exceeds the cap. */
        while (r->used > r->max && r->count > 1)
                ring_drop_oldest(r);

        if (ret_seq)
                *ret_seq = c->seq;
        return 0;
}

size_t ring_index_by_seq(const Ring *r, uint64_t seq) {
        uint64_t first;

        if (r->count == 0)
                return 0;
        /* Sequence numbers are contiguous, so the position is a subtraction. */
        first = ring_at(r, 0)->seq;
        if (seq <= first)
                return 0;
        if (seq - first >= r->count)
                return r->count;
        return (size_t) (seq - first);
}

size_t ring_index_by_offset(const Ring *r, uint64_t offset) {
        size_t lo = 0, hi = r->count;

        /* Find the last chunk starting at or before offset. */
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (ring_at(r, mid)->offset <= offset)
                        lo = mid;
                else
                        hi = mid;
        }
        if (lo < r->count) {
                const RingChunk *c = ring_at(r, lo);
                if (offset >= c->offset + c->size)
                        lo++;
        }
        return lo;
}

uint64_t ring_end_offset_of_seq(const Ring *r, uint64_t seq) {
        const RingChunk *c;

        if (r->count == 0 || seq >= r->next_seq)
                return r->total_bytes;
        if (seq < ring_at(r, 0)->seq)
                return 0;
        c = ring_at(r, ring_index_by_seq(r, seq));
        return c->offset + c->size;
}

uint64_t ring_first_offset(const Ring *r) {
        return r->count ? ring_at(r, 0)->offset : r->total_bytes;
}

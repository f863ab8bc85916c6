/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Recent output of one object, bounded in bytes. Chunks keep their global sequence number
 * and byte offset so late readers can replay by seq (ReadOutput) or by offset (ReadLog). */
typedef struct RingChunk {
        uint64_t seq;
        uint64_t offset; /* of data[0] among all bytes ever appended */
        uint32_t size;
        uint8_t stream;
        uint8_t data[];
} RingChunk;

typedef struct Ring {
        RingChunk **slots; /* circular; capacity is a power of two */
        size_t capacity, first, count;
        size_t used, max;  /* bytes charged (data + headers) and the cap */
        uint64_t next_seq;
        uint64_t total_bytes;
        bool truncated;
} Ring;

/* Per-chunk bookkeeping is charged against the cap too, so many tiny chunks stay bounded. */
#define RING_CHUNK_COST(size) (sizeof(RingChunk) + sizeof(RingChunk *) + (size))

void ring_init(Ring *r, size_t max);
void ring_clear(Ring *r);
int ring_append(Ring *r, uint8_t stream, const void *data, size_t size, uint64_t *ret_seq);

/* The chunk at position i, 0 being the oldest retained one. */
static inline const RingChunk *ring_at(const Ring *r, size_t i) {
        return r->slots[(r->first + i) & (r->capacity - 1)];
}
/* Index of the first retained chunk with seq >= seq (count when none). */
size_t ring_index_by_seq(const Ring *r, uint64_t seq);
/* Index of the retained chunk holding byte offset, or of the first one after it. */
size_t ring_index_by_offset(const Ring *r, uint64_t offset);
/* Offset just past chunk seq (0 when seq is older than anything retained). */
uint64_t ring_end_offset_of_seq(const Ring *r, uint64_t seq);
uint64_t ring_first_offset(const Ring *r);

/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Glob patterns for base names (a name never contains '/').
 *
 *   *, **      any run of characters, possibly empty
 *   ?          exactly one character
 *   [abc]      one of a set; ranges a-z, negation [!...] or [^...], a ']' first is a member,
 *              '\' escapes the next character
 *   {a,b{c,d}} alternatives, nestable, each a glob of its own, empty ones allowed
 *   \x         x literally
 *   !(P)       matches what P does not; only as the whole pattern, a whole brace alternative
 *              or a whole negation body, where it must span all of it
 *
 * A "**" followed by '/', repeated or not, is dropped from the start of the pattern and of a
 * negation body, so "**" "/" "*.txt" equals "*.txt". Any other '/' is a character no name
 * contains: whatever has to match it fails (a whole pattern, or just the alternative holding
 * it). Outside braces ',' and '}' are plain characters; '!' is one too, except at the start of
 * the pattern, where a '!' not followed by '(' is malformed.
 * Matching is case-sensitive and works on UTF-8 characters: '?' and classes take one whole
 * character when the bytes form a valid sequence, otherwise a single byte.
 *
 * Patterns longer than GLOB_PATTERN_MAX bytes or nesting braces and negations deeper than
 * GLOB_DEPTH_MAX are malformed. Time is O(pattern x name); a negated brace alternative that
 * can start at many places in the name costs up to O(name^2) bits of memory. */
#define GLOB_PATTERN_MAX 4096
#define GLOB_DEPTH_MAX 32

/* Match name against a glob pattern. Returns 1 on a match, 0 on none, -EINVAL when the
 * pattern is malformed (checked fully, even when the name would not reach the bad part),
 * -ENOMEM when out of memory. */
int glob_match(const char *pattern, const char *name);
/* 0 when the pattern is well formed, -EINVAL otherwise. Never allocates. */
int glob_validate(const char *pattern);

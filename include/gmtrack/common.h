/*
 * gmtrack/common.h — pieces every gmtrack header shares.
 *
 * Conventions that hold for every structure in the library:
 *  - Functions return 0 on success or a negative errno (-EINVAL, -ENOMEM,
 *    -EEXIST, -ENOENT, -ENOSPC). None aborts on bad input.
 *  - An operation that fails leaves the structure exactly as it was.
 *  - Ranges are inclusive, [first, last], so [0, UINT64_MAX] is expressible.
 *  - Every structure takes a `struct gm_allocator` at init (see alloc.h).
 *  - Readers may run under RCU while one writer, serialized by the caller,
 *    changes the structure (see rcu.h); each function says which it is.
 */
#ifndef GMTRACK_COMMON_H
#define GMTRACK_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if defined(GMTRACK_STATIC_DEFINE)
#define GM_EXPORT
#elif defined(__GNUC__)
#define GM_EXPORT __attribute__((visibility("default")))
#else
#define GM_EXPORT
#endif

#ifdef __cplusplus
#define GM_BEGIN_DECLS extern "C" {
#define GM_END_DECLS }
#else
#define GM_BEGIN_DECLS
#define GM_END_DECLS
#endif

GM_BEGIN_DECLS

#define GM_VERSION_MAJOR 0
#define GM_VERSION_MINOR 1
#define GM_VERSION_PATCH 0

/*
 * gm_version — the library's version as "MAJOR.MINOR.PATCH".
 * Cost O(1). Any thread, any context. Never allocates.
 */
GM_EXPORT const char *gm_version(void);

/*
 * gm_version_number — MAJOR * 10000 + MINOR * 100 + PATCH of the library
 * actually linked (compare with the GM_VERSION_* macros of the header).
 */
GM_EXPORT int gm_version_number(void);

GM_END_DECLS

#endif /* GMTRACK_COMMON_H */

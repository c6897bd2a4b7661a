/*
 * tests/pagemap_kv.h — the pagemap's lookups and iterator with the key and
 * value apart, as the tests' models (sorted arrays of keys) compare them.
 */
#ifndef GM_TESTS_PAGEMAP_KV_H
#define GM_TESTS_PAGEMAP_KV_H

#include <gmtrack/pagemap.h>

#include <stdbool.h>

/* gm_pagemap_next (next) or _prev from *k: the entry into *k, *v. */
static inline int pm_seek_kv(const struct gm_pagemap *m, uint64_t *k, void **v, bool next)
{
	struct gm_pagemap_entry e;
	int rc = next ? gm_pagemap_next(m, *k, &e) : gm_pagemap_prev(m, *k, &e);
	if (rc == 0) {
		*k = e.key;
		*v = e.value;
	}
	return rc;
}

/* gm_pagemap_iter_next into *k, *v: true while there is an entry. */
static inline bool pm_iter_kv(struct gm_pagemap_iter *it, uint64_t *k, void **v)
{
	struct gm_pagemap_entry e;
	if (gm_pagemap_iter_next(it, &e) != 0)
		return false;
	*k = e.key;
	*v = e.value;
	return true;
}

#endif

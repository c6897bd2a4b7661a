/* The README's example: a per-page state map for a 1 TiB guest, a lookup
 * under RCU from a registered thread, and its exact memory. */
#include <gmtrack/gmtrack.h>
#include <stdio.h>

enum { PRIVATE = 1, SHARED = 2 };

int main(void)
{
	struct gm_alloc_counting counting;
	gm_alloc_counting_init(&counting, NULL);
	gm_rcu_register_thread(); /* once per thread that reads or writes */

	struct gm_rangemap *pages;
	if (gm_rangemap_create(&pages, GM_RCU, &counting.allocator))
		return 1;
	gm_rangemap_store(pages, 0, (1ULL << 28) - 1, PRIVATE); /* 2^28 frames */
	gm_rangemap_store(pages, 0x1000, 0x1fff, SHARED);        /* convert 16 MiB */

	uint64_t state = 0, first = 0, last = 0;
	gm_rcu_read_lock();
	int rc = gm_rangemap_load(pages, 0x1234, &state, &first, &last);
	gm_rcu_read_unlock();
	printf("gmtrack %s: frame 0x1234 is %s in [%#llx, %#llx]; %llu ranges in %zu bytes\n",
	       gm_version(), state == SHARED ? "shared" : "private",
	       (unsigned long long)first, (unsigned long long)last,
	       (unsigned long long)gm_rangemap_count(pages),
	       gm_alloc_counting_bytes(&counting));

	gm_rangemap_destroy(pages);
	gm_rcu_unregister_thread();
	return rc == 0 && state == SHARED && gm_alloc_counting_bytes(&counting) == 0 ? 0 : 1;
}

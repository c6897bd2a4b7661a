// tests/cxx/api_cxx.cpp — every structure used from C++17 through the
// installed-style headers: create, write, read under RCU, iterate both ways,
// check the contract's errors, destroy. Built and run by make check.
#include <gmtrack/gmtrack.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char *what, int line)
{
	if (!ok) {
		std::fprintf(stderr, "api_cxx.cpp:%d: FAIL %s\n", line, what);
		failures++;
	}
}
#define EXPECT(x) expect((x), #x, __LINE__)

void rangemap_use(const gm_allocator *a)
{
	gm_rangemap *m = nullptr;
	EXPECT(gm_rangemap_create(&m, GM_RCU, a) == 0);
	EXPECT(gm_rangemap_store(m, 10, 19, 1) == 0);
	EXPECT(gm_rangemap_store(m, 30, 39, 2) == 0);
	EXPECT(gm_rangemap_store(m, 5, 4, 1) == -EINVAL);
	uint64_t v = 0, f = 0, l = 0;
	gm_rcu_read_lock();
	EXPECT(gm_rangemap_load(m, 15, &v, &f, &l) == 0 && v == 1 && f == 10 && l == 19);
	std::vector<uint64_t> firsts;
	gm_rangemap_iter it;
	gm_range r;
	EXPECT(gm_rangemap_iter_init(&it, m, 0, UINT64_MAX, GM_ITER_REVERSE) == 0);
	while (gm_rangemap_iter_next(&it, &r) == 0)
		firsts.push_back(r.first);
	gm_rcu_read_unlock();
	EXPECT(firsts.size() == 2 && firsts[0] == 30 && firsts[1] == 10);
	EXPECT(gm_rangemap_validate(m, nullptr) == 0);
	gm_rangemap_destroy(m);
}

void pagemap_use(const gm_allocator *a)
{
	gm_pagemap *m = nullptr;
	static int values[3];
	EXPECT(gm_pagemap_create(&m, GM_RCU, a) == 0);
	for (int i = 0; i < 3; i++)
		EXPECT(gm_pagemap_insert(m, 100 * static_cast<uint64_t>(i), &values[i]) == 0);
	EXPECT(gm_pagemap_insert(m, 0, nullptr) == -EINVAL);
	gm_rcu_read_lock();
	EXPECT(gm_pagemap_load(m, 100) == &values[1]);
	gm_pagemap_entry e;
	EXPECT(gm_pagemap_next(m, 101, &e) == 0 && e.key == 200);
	gm_rcu_read_unlock();
	EXPECT(gm_pagemap_remove(m, 100, nullptr) == 0);
	EXPECT(gm_pagemap_count(m) == 2);
	gm_pagemap_destroy(m);
}

void itree_use(const gm_allocator *a)
{
	gm_itree *t = nullptr;
	int slot[2];
	EXPECT(gm_itree_create(&t, GM_RCU, a) == 0);
	EXPECT(gm_itree_insert(t, 0x1000, 0x1fff, &slot[0]) == 0);
	EXPECT(gm_itree_insert(t, 0x1800, 0x2fff, &slot[1]) == 0);
	void *items[4];
	gm_rcu_read_lock();
	EXPECT(gm_itree_fill(t, 0x1900, 0x1900, items, 4) == 2);
	gm_itree_iter it;
	gm_itree_entry e;
	EXPECT(gm_itree_iter_init(&it, t, 0, UINT64_MAX, GM_ITER_REVERSE) == 0);
	EXPECT(gm_itree_iter_next(&it, &e) == 0 && e.item == &slot[1]);
	gm_rcu_read_unlock();
	gm_itree_destroy(t);
}

void rmap_use(const gm_allocator *a)
{
	gm_rmap_cache *c = nullptr;
	gm_rmap_head h{};
	alignas(8) static uint64_t sptes[3];
	EXPECT(gm_rmap_cache_create(&c, 0, a) == 0);
	for (auto &p : sptes) {
		EXPECT(gm_rmap_cache_topup(c, GM_RMAP_ADD_BLOCKS) == 0);
		EXPECT(gm_rmap_add(&h, &p, c) == 0);
	}
	EXPECT(gm_rmap_count(&h) == 3);
	gm_rmap_iter it;
	void *p;
	unsigned n = 0;
	EXPECT(gm_rmap_iter_init(&it, &h) == 0);
	while (gm_rmap_iter_next(&it, &p) == 0)
		n++;
	EXPECT(n == 3);
	gm_rmap_clear(&h, c, nullptr, nullptr);
	gm_rmap_cache_destroy(c);
}

void rangeset_use(const gm_allocator *a)
{
	gm_rangeset *s = nullptr;
	gm_rangeset_config cfg = {"c++", GM_RANGESET_NO_LIMIT};
	EXPECT(gm_rangeset_create(&s, &cfg, GM_RCU, a) == 0);
	EXPECT(gm_rangeset_add(s, 1, 5) == 0);
	EXPECT(gm_rangeset_add(s, 6, 9) == 0); /* merges */
	EXPECT(gm_rangeset_count(s) == 1);
	gm_rangeset_group *g = nullptr;
	EXPECT(gm_rangeset_group_create(&g, GM_RCU, a) == 0);
	EXPECT(gm_rangeset_group_join(g, s) == 0);
	gm_rcu_read_lock();
	EXPECT(gm_rangeset_group_select(g, 7) == 0);
	EXPECT(gm_rangeset_group_select(g, 70) == -ENOENT);
	gm_rcu_read_unlock();
	gm_rangeset_group_destroy(g);
	gm_rangeset_destroy(s);
}

void space_use(const gm_allocator *a)
{
	gm_space *s = nullptr;
	EXPECT(gm_space_create(&s, nullptr, GM_RCU, a) == 0);
	EXPECT(gm_space_slot_add(s, 0, 0, 256, 0x7f0000000000ull, GM_SPACE_SLOT_DIRTY_LOG) == 0);
	EXPECT(gm_space_slot_add(s, 1, 0, 1, 0x1000, 0) == -EEXIST);
	gm_space_cache cache;
	gm_space_cache_init(&cache);
	uint64_t hva = 0;
	gm_rcu_read_lock();
	EXPECT(gm_space_gfn_to_hva(s, &cache, 3, &hva) == 0 && hva == 0x7f0000003000ull);
	const gm_space_slot *slot = gm_space_id_to_slot(s, 0);
	EXPECT(slot && gm_space_dirty_mark(s, slot, 3) == 0);
	EXPECT(gm_space_gfn_to_hva(nullptr, &cache, 3, &hva) == -EINVAL);
	gm_rcu_read_unlock();
	struct gm_space_stats st;
	EXPECT(gm_space_stats(s, &st) == 0 && st.slots == 1);
	EXPECT(gm_space_validate(s, nullptr) == 0);
	gm_space_destroy(s);
}

} // namespace

int main()
{
	gm_rcu_register_thread();
	gm_alloc_counting counting;
	gm_alloc_counting_init(&counting, nullptr);
	rangemap_use(&counting.allocator);
	pagemap_use(&counting.allocator);
	itree_use(&counting.allocator);
	rmap_use(&counting.allocator);
	rangeset_use(&counting.allocator);
	space_use(&counting.allocator);
	EXPECT(gm_alloc_counting_bytes(&counting) == 0);
	gm_rcu_unregister_thread();
	std::printf("api_cxx: %s, %d failures\n", gm_version(), failures);
	return failures ? 1 : 0;
}

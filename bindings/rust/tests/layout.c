/* Prints the size, alignment and field offsets of every value struct the
 * Rust crate mirrors (src/sys.rs), one "name value" per line; tests/layout.rs
 * compiles it against the headers and compares with Rust's layout. */
#include <gmtrack/gmtrack.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>

#define S(t) printf(#t " %zu %zu\n", sizeof(struct t), alignof(struct t))
#define F(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f))

int main(void)
{
	S(gm_allocator); F(gm_allocator, alloc); F(gm_allocator, free); F(gm_allocator, ctx);
	S(gm_alloc_counting); F(gm_alloc_counting, allocator); F(gm_alloc_counting, parent);
	F(gm_alloc_counting, bytes); F(gm_alloc_counting, peak); F(gm_alloc_counting, allocs);
	F(gm_alloc_counting, frees);
	S(gm_range); F(gm_range, first); F(gm_range, last); F(gm_range, value);
	S(gm_rangemap_stats); F(gm_rangemap_stats, ranges); F(gm_rangemap_stats, gaps);
	F(gm_rangemap_stats, leaves); F(gm_rangemap_stats, inner_nodes); F(gm_rangemap_stats, bytes);
	F(gm_rangemap_stats, height); F(gm_rangemap_stats, kept_bytes);
	S(gm_rangemap_iter); F(gm_rangemap_iter, map); F(gm_rangemap_iter, first);
	F(gm_rangemap_iter, last); F(gm_rangemap_iter, flags); F(gm_rangemap_iter, state);
	F(gm_rangemap_iter, depth); F(gm_rangemap_iter, slot); F(gm_rangemap_iter, leaf);
	F(gm_rangemap_iter, node); F(gm_rangemap_iter, pos);
	S(gm_pagemap_entry); F(gm_pagemap_entry, key); F(gm_pagemap_entry, value);
	S(gm_pagemap_stats); F(gm_pagemap_stats, entries); F(gm_pagemap_stats, bytes);
	F(gm_pagemap_stats, branches); F(gm_pagemap_stats, bitmap_leaves);
	F(gm_pagemap_stats, sorted_leaves); F(gm_pagemap_stats, max_depth);
	S(gm_pagemap_iter); F(gm_pagemap_iter, map); F(gm_pagemap_iter, pos);
	F(gm_pagemap_iter, end); F(gm_pagemap_iter, reverse); F(gm_pagemap_iter, done);
	S(gm_itree_entry); F(gm_itree_entry, first); F(gm_itree_entry, last); F(gm_itree_entry, item);
	S(gm_itree_iter); F(gm_itree_iter, a); F(gm_itree_iter, b); F(gm_itree_iter, level);
	F(gm_itree_iter, top); F(gm_itree_iter, reverse); F(gm_itree_iter, node);
	F(gm_itree_iter, idx); F(gm_itree_iter, nhits); F(gm_itree_iter, next_hit);
	F(gm_itree_iter, past_b); F(gm_itree_iter, hit);
	S(gm_itree_stats); F(gm_itree_stats, entries); F(gm_itree_stats, height);
	F(gm_itree_stats, leaf_nodes); F(gm_itree_stats, inner_nodes);
	F(gm_itree_stats, node_bytes); F(gm_itree_stats, total_bytes);
	S(gm_space_slot); F(gm_space_slot, base_gfn); F(gm_space_slot, npages);
	F(gm_space_slot, hva); F(gm_space_slot, id); F(gm_space_slot, flags);
	S(gm_space_cache); F(gm_space_cache, generation); F(gm_space_cache, base_gfn);
	F(gm_space_cache, npages); F(gm_space_cache, hva); F(gm_space_cache, slot);
	S(gm_space_head); F(gm_space_head, generation);
	S(gm_space_config); F(gm_space_config, max_slots); F(gm_space_config, host_page_shift);
	S(gm_space_hva_hit); F(gm_space_hva_hit, slot); F(gm_space_hva_hit, first_gfn);
	F(gm_space_hva_hit, last_gfn);
	S(gm_space_io); F(gm_space_io, first); F(gm_space_io, last); F(gm_space_io, fn);
	F(gm_space_io, ctx);
	S(gm_space_stats); F(gm_space_stats, slots); F(gm_space_stats, guest_pages);
	F(gm_space_stats, generation); F(gm_space_stats, bytes_space); F(gm_space_stats, bytes_slots);
	F(gm_space_stats, bytes_gfn_index); F(gm_space_stats, bytes_hva_index);
	F(gm_space_stats, bytes_id_index); F(gm_space_stats, bytes_attributes);
	F(gm_space_stats, bytes_write_track); F(gm_space_stats, bytes_io); F(gm_space_stats, bytes_dirty);
	F(gm_space_stats, bytes_rmap); F(gm_space_stats, bytes_total); F(gm_space_stats, bytes_per_gib);
	printf("GM_RCU %u\nGM_ITER_REVERSE %u\nGM_RANGEMAP_NOCOALESCE %u\nGM_RANGEMAP_ITER_CLIP %u\n"
	       "GM_RANGEMAP_ITER_GAPS %u\nGM_RANGEMAP_UPDATE_GAPS %u\nGM_RANGEMAP_MAX_HEIGHT %u\n"
	       "GM_ITREE_MAX_HEIGHT %u\nGM_ITREE_LEAF_ENTRIES %u\nGM_SPACE_PAGE_SHIFT %u\n"
	       "GM_SPACE_SLOT_READONLY %u\nGM_SPACE_SLOT_DIRTY_LOG %u\nGM_SPACE_DEFAULT_MAX_SLOTS %u\n"
	       "GM_SPACE_MMIO %u\nGM_SPACE_PIO %u\nGM_RANGEMAP_KEEP %u\nGM_RANGEMAP_SET %u\nGM_RANGEMAP_CLEAR %u\n"
	       "EINVAL %d\nENOMEM %d\nEEXIST %d\nENOENT %d\nENOSPC %d\nEIO %d\n",
	       GM_RCU, GM_ITER_REVERSE, GM_RANGEMAP_NOCOALESCE, GM_RANGEMAP_ITER_CLIP,
	       GM_RANGEMAP_ITER_GAPS, GM_RANGEMAP_UPDATE_GAPS, (unsigned)GM_RANGEMAP_MAX_HEIGHT,
	       (unsigned)GM_ITREE_MAX_HEIGHT, (unsigned)GM_ITREE_LEAF_ENTRIES, (unsigned)GM_SPACE_PAGE_SHIFT,
	       GM_SPACE_SLOT_READONLY, GM_SPACE_SLOT_DIRTY_LOG, GM_SPACE_DEFAULT_MAX_SLOTS,
	       (unsigned)GM_SPACE_MMIO, (unsigned)GM_SPACE_PIO, (unsigned)GM_RANGEMAP_KEEP,
	       (unsigned)GM_RANGEMAP_SET, (unsigned)GM_RANGEMAP_CLEAR,
	       EINVAL, ENOMEM, EEXIST, ENOENT, ENOSPC, EIO);
	return 0;
}

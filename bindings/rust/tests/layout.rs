//! The -sys layer against the headers: tests/layout.c, compiled with the C
//! compiler against the headers build.rs found, prints every mirrored
//! struct's size, alignment and field offsets and the constants; each must
//! equal Rust's view. Skipped (with a message) without a C compiler or
//! headers.
use gmtrack::sys::*;
use std::collections::HashMap;
use std::mem::{align_of, offset_of, size_of};
use std::process::Command;

fn c_layout() -> Option<HashMap<String, Vec<u64>>> {
    let include = option_env!("GMTRACK_INCLUDE_DIR")?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out_dir = std::env::temp_dir().join(format!("gmtrack-layout-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).ok()?;
    let exe = out_dir.join("layout");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/layout.c");
    let st = Command::new(&cc).args(["-std=c11", "-o"]).arg(&exe).arg(format!("-I{include}")).arg(src).status().ok()?;
    if !st.success() {
        panic!("compiling tests/layout.c against {include} failed");
    }
    let out = Command::new(&exe).output().expect("run layout");
    let _ = std::fs::remove_dir_all(&out_dir);
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let k = w.next().unwrap().to_string();
                (k, w.map(|v| v.parse::<i64>().unwrap() as u64).collect())
            })
            .collect(),
    )
}

macro_rules! rust_layout {
    ($m:ident; $($t:ident { $($f:ident),* })*) => {
        $(
            $m.insert(stringify!($t).to_string(), vec![size_of::<$t>() as u64, align_of::<$t>() as u64]);
            $( $m.insert(format!("{}.{}", stringify!($t), stringify!($f)), vec![offset_of!($t, $f) as u64]); )*
        )*
    };
}

#[test]
fn structs_and_constants_match_the_headers() {
    let Some(c) = c_layout() else {
        eprintln!("layout test skipped: no headers (GMTRACK_INCLUDE_DIR) or no C compiler");
        return;
    };
    let mut r: HashMap<String, Vec<u64>> = HashMap::new();
    rust_layout! { r;
        gm_allocator { alloc, free, ctx }
        gm_alloc_counting { allocator, parent, bytes, peak, allocs, frees }
        gm_range { first, last, value }
        gm_rangemap_stats { ranges, gaps, leaves, inner_nodes, bytes, height, kept_bytes }
        gm_rangemap_iter { map, first, last, flags, state, depth, slot, leaf, node, pos }
        gm_pagemap_entry { key, value }
        gm_pagemap_stats { entries, bytes, branches, bitmap_leaves, sorted_leaves, max_depth }
        gm_pagemap_iter { map, pos, end, reverse, done }
        gm_itree_entry { first, last, item }
        gm_itree_iter { a, b, level, top, reverse, node, idx, nhits, next_hit, past_b, hit }
        gm_itree_stats { entries, height, leaf_nodes, inner_nodes, node_bytes, total_bytes }
        gm_space_slot { base_gfn, npages, hva, id, flags }
        gm_space_cache { generation, base_gfn, npages, hva, slot }
        gm_space_head { generation }
        gm_space_config { max_slots, host_page_shift }
        gm_space_hva_hit { slot, first_gfn, last_gfn }
        gm_space_stats { slots, guest_pages, generation, bytes_space, bytes_slots, bytes_gfn_index,
                         bytes_hva_index, bytes_id_index, bytes_attributes, bytes_write_track, bytes_io,
                         bytes_dirty, bytes_rmap, bytes_total, bytes_per_gib }
    }
    // `fn` is a Rust keyword: gm_space_io's field is fn_.
    r.insert("gm_space_io".into(), vec![size_of::<gm_space_io>() as u64, align_of::<gm_space_io>() as u64]);
    for (f, o) in [
        ("first", offset_of!(gm_space_io, first)),
        ("last", offset_of!(gm_space_io, last)),
        ("fn", offset_of!(gm_space_io, fn_)),
        ("ctx", offset_of!(gm_space_io, ctx)),
    ] {
        r.insert(format!("gm_space_io.{f}"), vec![o as u64]);
    }
    for (k, v) in [
        ("GM_RCU", GM_RCU as u64),
        ("GM_ITER_REVERSE", GM_ITER_REVERSE as u64),
        ("GM_RANGEMAP_NOCOALESCE", GM_RANGEMAP_NOCOALESCE as u64),
        ("GM_RANGEMAP_ITER_CLIP", GM_RANGEMAP_ITER_CLIP as u64),
        ("GM_RANGEMAP_ITER_GAPS", GM_RANGEMAP_ITER_GAPS as u64),
        ("GM_RANGEMAP_UPDATE_GAPS", GM_RANGEMAP_UPDATE_GAPS as u64),
        ("GM_RANGEMAP_MAX_HEIGHT", GM_RANGEMAP_MAX_HEIGHT as u64),
        ("GM_ITREE_MAX_HEIGHT", GM_ITREE_MAX_HEIGHT as u64),
        ("GM_ITREE_LEAF_ENTRIES", GM_ITREE_LEAF_ENTRIES as u64),
        ("GM_SPACE_PAGE_SHIFT", GM_SPACE_PAGE_SHIFT as u64),
        ("GM_SPACE_SLOT_READONLY", GM_SPACE_SLOT_READONLY as u64),
        ("GM_SPACE_SLOT_DIRTY_LOG", GM_SPACE_SLOT_DIRTY_LOG as u64),
        ("GM_SPACE_DEFAULT_MAX_SLOTS", GM_SPACE_DEFAULT_MAX_SLOTS as u64),
        ("GM_SPACE_MMIO", GM_SPACE_MMIO as u64),
        ("GM_SPACE_PIO", GM_SPACE_PIO as u64),
        ("GM_RANGEMAP_KEEP", GM_RANGEMAP_KEEP as u64),
        ("GM_RANGEMAP_SET", GM_RANGEMAP_SET as u64),
        ("GM_RANGEMAP_CLEAR", GM_RANGEMAP_CLEAR as u64),
        ("EINVAL", EINVAL as u64),
        ("ENOMEM", ENOMEM as u64),
        ("EEXIST", EEXIST as u64),
        ("ENOENT", ENOENT as u64),
        ("ENOSPC", ENOSPC as u64),
        ("EIO", EIO as u64),
    ] {
        r.insert(k.into(), vec![v]);
    }
    let mut bad = Vec::new();
    for (k, v) in &c {
        match r.get(k) {
            Some(rv) if rv == v => {}
            Some(rv) => bad.push(format!("{k}: C {v:?}, Rust {rv:?}")),
            None => bad.push(format!("{k}: printed by layout.c, not checked in Rust")),
        }
    }
    for k in r.keys() {
        if !c.contains_key(k) {
            bad.push(format!("{k}: checked in Rust, not printed by layout.c"));
        }
    }
    assert!(bad.is_empty(), "the -sys layer differs from the headers:\n  {}", bad.join("\n  "));
    assert_eq!(gmtrack::version_number() / 10000, 1, "linked library is not API 1.x");
}

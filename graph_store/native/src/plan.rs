//! Folding a batch into one commit: `graph_store/batch.py::aggregate` over native state.
//!
//! The same rules in the same order, so a commit writes the same bytes as the Python
//! planner's (tests/graph_store/rocksdb/test_native.py compares whole stores): new ids get the next
//! index of their type in first-sight order; each interaction adds its increment to
//! `ui[user, item]` and `pop[item]` by the decay rule, and a session whose previous item
//! differs adds 1 to `ii[previous, item]`; follow ops are resolved in arrival order.
//! Nothing here mutates the committed state except new node ids, which `abort` takes back.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::codec::Weight;

pub const USER: usize = 0;
pub const ITEM: usize = 1;
pub const SESSION: usize = 2;

#[derive(Default)]
pub struct Nodes {
    pub index: FxHashMap<Box<str>, u32>,
    pub ids: Vec<Box<str>>,
}

impl Nodes {
    #[inline]
    pub fn get(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    #[inline]
    fn get_or_add(&mut self, id: &str) -> u32 {
        if let Some(&x) = self.index.get(id) {
            return x;
        }
        let x = self.ids.len() as u32;
        let boxed: Box<str> = id.into();
        self.ids.push(boxed.clone());
        self.index.insert(boxed, x);
        x
    }

    pub fn truncate(&mut self, n: usize) {
        for id in self.ids.drain(n..) {
            self.index.remove(&id);
        }
    }
}

#[derive(Clone)]
pub struct Session {
    pub user: u32,
    pub items: Vec<u32>, // item indices, oldest first
    pub last_ts: i64,
    pub count: u32,
}

#[derive(Default)]
pub struct State {
    pub nodes: [Nodes; 3],
    pub ui: FxHashMap<u64, Weight>,
    pub ii: FxHashMap<u64, Weight>,
    pub uu: FxHashMap<u64, Weight>,
    pub pop: Vec<Option<Weight>>,          // by item index
    pub sessions: FxHashMap<u32, Session>, // by session index
    pub marks: [FxHashSet<u32>; 3],
}

/// A staged event; ids are spans of `Staged::text`.
pub enum Ev {
    Inter {
        u: (u32, u32),
        i: (u32, u32),
        s: (u32, u32),
        ts: i64,
        inc: f64,
    },
    Follow {
        a: (u32, u32),
        b: (u32, u32),
        ts: i64,
        follow: bool,
    },
    Hole, // a record the caller decodes; it fills or leaves the slot
}

#[derive(Default)]
pub struct Staged {
    pub text: String,
    pub evs: Vec<Ev>,
}

impl Staged {
    #[inline]
    pub fn span(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        (start, self.text.len() as u32)
    }

    #[inline]
    fn get(&self, span: (u32, u32)) -> &str {
        &self.text[span.0 as usize..span.1 as usize]
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.evs.clear();
    }
}

#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub interactions: u64,
    pub follows: u64,
    pub unfollows: u64,
    pub skipped: u64,
    pub fresh_ui: u64,
    pub fresh_ii: u64,
    pub uu_change: i64,
    pub touched: u64,
    pub watermark: Option<i64>,
}

pub struct Plan {
    pub n0: [usize; 3], // node counts before the batch; ids from there on are new
    pub ui: FxHashMap<u64, Weight>,
    pub ii: FxHashMap<u64, Weight>,
    pub pop: FxHashMap<u32, Weight>,
    pub uu_put: FxHashMap<u64, Weight>,
    pub uu_del: Vec<u64>,
    pub sessions: Vec<(u32, Session)>,
    pub new_marks: [Vec<u32>; 3],
    pub stats: Stats,
}

// `2.0 ** x` as CPython computes it: libm's pow. Called through an opaque pointer so that the
// compiler cannot turn pow(2, x) into exp2(x), which may round differently.
extern "C" {
    fn pow(x: f64, y: f64) -> f64;
}

#[inline]
fn pow2(x: f64) -> f64 {
    let f: unsafe extern "C" fn(f64, f64) -> f64 = std::hint::black_box(pow);
    unsafe { f(2.0, x) }
}

/// `graph_store.decay.add_decayed`, as `aggregate` inlines it.
#[inline]
fn add_decayed(cur: Option<Weight>, inc: f64, ts: i64, hl: f64) -> Weight {
    match cur {
        None => (inc, ts),
        Some((w0, t0)) => {
            if ts >= t0 {
                (w0 * pow2((t0 - ts) as f64 / hl) + inc, ts)
            } else {
                (w0 + inc * pow2((ts - t0) as f64 / hl), t0)
            }
        }
    }
}

struct Seq {
    items: Vec<u32>,
    n_old: Option<(usize, u32)>, // stored history length and count
    user: u32,
    ts: i64,
}

pub struct Settings {
    pub half_life_ms: f64,
    pub session_history: usize,
}

/// Plans the staged events against `st`. New ids are added to `st.nodes` (see `Plan::n0`).
pub fn plan(st: &mut State, staged: &Staged, cfg: &Settings) -> Plan {
    let hl = cfg.half_life_ms;
    let n0 = [
        st.nodes[USER].ids.len(),
        st.nodes[ITEM].ids.len(),
        st.nodes[SESSION].ids.len(),
    ];
    let n = staged.evs.len();
    let mut ui: FxHashMap<u64, Weight> = FxHashMap::with_capacity_and_hasher(n, Default::default());
    let mut ii: FxHashMap<u64, Weight> = FxHashMap::with_capacity_and_hasher(n, Default::default());
    let mut pop: FxHashMap<u32, Weight> = FxHashMap::with_capacity_and_hasher(n, Default::default());
    let mut dirty: [FxHashSet<u32>; 3] = Default::default();
    let mut seqs: FxHashMap<u32, Seq> = FxHashMap::default();
    let mut ops: Vec<(u32, u32, i64, bool)> = Vec::new();
    let mut stats = Stats::default();
    let mut wm: Option<i64> = None;
    for ev in &staged.evs {
        match *ev {
            Ev::Hole => continue,
            Ev::Follow { a, b, ts, follow } => {
                wm = Some(wm.map_or(ts, |w| w.max(ts)));
                let sx = st.nodes[USER].get_or_add(staged.get(a));
                let dx = st.nodes[USER].get_or_add(staged.get(b));
                ops.push((sx, dx, ts, follow));
            }
            Ev::Inter { u, i, s, ts, inc } => {
                wm = Some(wm.map_or(ts, |w| w.max(ts)));
                stats.interactions += 1;
                let ux = st.nodes[USER].get_or_add(staged.get(u));
                let ix = st.nodes[ITEM].get_or_add(staged.get(i));
                dirty[USER].insert(ux);
                dirty[ITEM].insert(ix);
                let k = (ux as u64) << 32 | ix as u64;
                let cur = ui.get(&k).or_else(|| st.ui.get(&k)).copied();
                if cur.is_none() {
                    stats.fresh_ui += 1;
                }
                ui.insert(k, add_decayed(cur, inc, ts, hl));
                let cur = pop
                    .get(&ix)
                    .copied()
                    .or_else(|| st.pop.get(ix as usize).copied().flatten());
                pop.insert(ix, add_decayed(cur, inc, ts, hl));
                let sx = st.nodes[SESSION].get_or_add(staged.get(s));
                let prev = match seqs.get_mut(&sx) {
                    Some(seq) => {
                        seq.user = ux;
                        seq.ts = ts;
                        let prev = *seq.items.last().unwrap();
                        seq.items.push(ix);
                        Some(prev)
                    }
                    None => match st.sessions.get(&sx) {
                        None => {
                            seqs.insert(
                                sx,
                                Seq {
                                    items: vec![ix],
                                    n_old: None,
                                    user: ux,
                                    ts,
                                },
                            );
                            None
                        }
                        Some(old) => {
                            let mut items = Vec::with_capacity(old.items.len() + 4);
                            items.extend_from_slice(&old.items);
                            let prev = *items.last().unwrap();
                            items.push(ix);
                            seqs.insert(
                                sx,
                                Seq {
                                    items,
                                    n_old: Some((old.items.len(), old.count)),
                                    user: ux,
                                    ts,
                                },
                            );
                            if prev != ix {
                                dirty[ITEM].insert(prev);
                            }
                            Some(prev)
                        }
                    },
                };
                if let Some(prev) = prev {
                    if prev != ix {
                        let k = (prev as u64) << 32 | ix as u64;
                        let cur = ii.get(&k).or_else(|| st.ii.get(&k)).copied();
                        if cur.is_none() {
                            stats.fresh_ii += 1;
                        }
                        ii.insert(k, add_decayed(cur, 1.0, ts, hl));
                    }
                }
            }
        }
    }
    let hist = cfg.session_history;
    let mut sessions = Vec::with_capacity(seqs.len());
    for (sx, seq) in seqs {
        dirty[SESSION].insert(sx);
        let n = seq.items.len();
        let (keep, count) = match seq.n_old {
            None => (hist, n as u64),
            Some((n_old, old_count)) => (hist.max(n_old), old_count as u64 + (n - n_old) as u64),
        };
        let items = seq.items[n.saturating_sub(keep)..].to_vec();
        // u32 on disk, as the Python codec packs it; a session of 4 billion events is not real.
        sessions.push((
            sx,
            Session {
                user: seq.user,
                items,
                last_ts: seq.ts,
                count: count.min(u32::MAX as u64) as u32,
            },
        ));
    }
    // Follow ops (graph_store.batch._resolve_follows and follow_outcome).
    let mut overlay: FxHashMap<u64, Option<Weight>> = FxHashMap::default();
    for &(sx, dx, ts, follow) in &ops {
        let key = (sx as u64) << 32 | dx as u64;
        let cur = match overlay.get(&key) {
            Some(v) => *v,
            None => st.uu.get(&key).copied(),
        };
        let t_ref = cur.map(|w| w.1);
        let effect = match t_ref {
            Some(t) if ts < t => None,
            _ if follow => Some(Some((1.0, ts))),
            None => None,
            Some(_) => Some(None),
        };
        match effect {
            None => stats.skipped += 1,
            Some(v) => {
                if v.is_some() {
                    stats.follows += 1;
                } else {
                    stats.unfollows += 1;
                }
                overlay.insert(key, v);
                dirty[USER].insert(sx);
                dirty[USER].insert(dx);
            }
        }
    }
    let mut uu_put = FxHashMap::default();
    let mut uu_del = Vec::new();
    let mut change = 0i64;
    for (&k, v) in &overlay {
        match v {
            Some(w) => {
                uu_put.insert(k, *w);
                if !st.uu.contains_key(&k) {
                    change += 1;
                }
            }
            None => {
                if st.uu.contains_key(&k) {
                    uu_del.push(k);
                    change -= 1;
                }
            }
        }
    }
    stats.uu_change = change;
    stats.touched = (ui.len() + ii.len() + overlay.len()) as u64;
    stats.watermark = wm;
    let mut new_marks: [Vec<u32>; 3] = Default::default();
    for t in 0..3 {
        new_marks[t] = dirty[t].iter().copied().filter(|x| !st.marks[t].contains(x)).collect();
    }
    Plan {
        n0,
        ui,
        ii,
        pop,
        uu_put,
        uu_del,
        sessions,
        new_marks,
        stats,
    }
}

/// Folds a committed plan into the state.
pub fn confirm(st: &mut State, plan: Plan) {
    st.ui.extend(plan.ui);
    st.ii.extend(plan.ii);
    let n_items = st.nodes[ITEM].ids.len();
    if st.pop.len() < n_items {
        st.pop.resize(n_items, None);
    }
    for (i, w) in plan.pop {
        st.pop[i as usize] = Some(w);
    }
    st.uu.extend(plan.uu_put);
    for k in plan.uu_del {
        st.uu.remove(&k);
    }
    st.sessions.extend(plan.sessions);
    for (t, marks) in plan.new_marks.into_iter().enumerate() {
        st.marks[t].extend(marks);
    }
}

/// Takes back the ids a failed plan added.
pub fn abort(st: &mut State, plan: &Plan) {
    for t in 0..3 {
        st.nodes[t].truncate(plan.n0[t]);
    }
}

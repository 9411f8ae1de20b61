//! `graph_store._native`: the RocksDB graph store's batch path without Python objects.
//!
//! `Kernel` mirrors the committed state of one store (node ids, edge and popularity weights,
//! sessions, dirty marks) and turns staged events into the keys and values of one commit.
//! `graph_store/rocksdb/native.py` owns it: it loads the state when the store opens, writes each
//! plan's keys in one WriteBatch together with the offsets, and only then confirms the plan.

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use rustc_hash::FxHashMap;

mod codec;
mod commit;
mod kafka;
mod plan;
mod wire;

use codec::*;
use kafka::{kafka_error, DeferredRecord};
use plan::{Ev, Plan, Session, Settings, Staged, State, ITEM, SESSION, USER};
use wire::stage_payload;

type KindWeights = Vec<(Vec<u8>, f64)>;

fn node_type(name: &str) -> PyResult<usize> {
    match name {
        "user" => Ok(USER),
        "item" => Ok(ITEM),
        "session" => Ok(SESSION),
        _ => Err(PyValueError::new_err(format!(
            "unknown node type {name:?}; expected user, item or session"
        ))),
    }
}

fn corrupt(what: String) -> PyErr {
    PyValueError::new_err(what)
}

#[pyclass(module = "graph_store._native")]
struct Kernel {
    cfg: Settings,
    kind_weights: FxHashMap<String, f64>,
    wire: Option<(wire::Limits, KindWeights)>, // the decoder's limits, and its kinds with the store's weights
    st: State,
    staged: Staged,
    pending: Option<Plan>,
}

#[pymethods]
impl Kernel {
    #[new]
    fn new(half_life_ms: f64, kind_weights: FxHashMap<String, f64>, session_history: usize) -> Self {
        Kernel {
            cfg: Settings {
                half_life_ms,
                session_history,
            },
            kind_weights,
            wire: None,
            st: State::default(),
            staged: Staged::default(),
            pending: None,
        }
    }

    /// The wire decoder's rules: the kinds it accepts, its id and payload limits, its version.
    fn configure_wire(&mut self, kinds: Vec<String>, max_id_len: usize, max_bytes: usize, version: i64) {
        let table = kinds
            .into_iter()
            .filter_map(|k| self.kind_weights.get(&k).map(|&w| (k.into_bytes(), w)))
            .collect();
        self.wire = Some((
            wire::Limits {
                max_id_len,
                max_bytes,
                max_ts: 0,
                version,
            },
            table,
        ));
    }

    // ---- loading the committed state --------------------------------------------------------
    fn load_index(&mut self, keys: Vec<Vec<u8>>, values: Vec<Vec<u8>>) -> PyResult<()> {
        for (k, v) in keys.iter().zip(values) {
            let (code, index) = decode_index_key(k).map_err(corrupt)?;
            let t = NODE_CODE
                .iter()
                .position(|&c| c == code)
                .ok_or_else(|| corrupt(format!("index key {k:?}")))?;
            let nodes = &mut self.st.nodes[t];
            if index as usize != nodes.ids.len() {
                return Err(corrupt(format!(
                    "node index {index} of type {} is out of sequence",
                    code as char
                )));
            }
            let id: Box<str> = String::from_utf8(v)
                .map_err(|_| corrupt("a node id is not UTF-8".into()))?
                .into();
            nodes.ids.push(id.clone());
            nodes.index.insert(id, index);
        }
        Ok(())
    }

    fn load_edges(&mut self, keys: Vec<Vec<u8>>, values: Vec<Vec<u8>>) -> PyResult<()> {
        for (k, v) in keys.iter().zip(values.iter()) {
            let (code, key) = decode_edge_key(k).map_err(corrupt)?;
            let w = decode_weight(v).map_err(corrupt)?;
            match code {
                EDGE_UI => self.st.ui.insert(key, w),
                EDGE_II => self.st.ii.insert(key, w),
                EDGE_UU => self.st.uu.insert(key, w),
                _ => return Err(corrupt(format!("load_edges takes forward edges only, got code {code}"))),
            };
        }
        Ok(())
    }

    fn load_popularity(&mut self, keys: Vec<Vec<u8>>, values: Vec<Vec<u8>>) -> PyResult<()> {
        let n = self.st.nodes[ITEM].ids.len();
        self.st.pop.resize(n, None);
        for (k, v) in keys.iter().zip(values.iter()) {
            let i = decode_pop_key(k).map_err(corrupt)? as usize;
            if i >= n {
                return Err(corrupt(format!("popularity of item index {i}, but only {n} items")));
            }
            self.st.pop[i] = Some(decode_weight(v).map_err(corrupt)?);
        }
        Ok(())
    }

    fn load_sessions(&mut self, keys: Vec<Vec<u8>>, values: Vec<Vec<u8>>) -> PyResult<()> {
        for (k, v) in keys.iter().zip(values.iter()) {
            let sid = std::str::from_utf8(&k[1..]).map_err(|_| corrupt("a session id is not UTF-8".into()))?;
            let (last_ts, count, user, items) = decode_session(v).map_err(corrupt)?;
            let sx = self.known(SESSION, sid)?;
            let ux = self.known(USER, &user)?;
            let items = items
                .iter()
                .map(|i| self.known(ITEM, i))
                .collect::<PyResult<Vec<u32>>>()?;
            if items.is_empty() {
                return Err(corrupt(format!("session {sid:?} is stored without items")));
            }
            self.st.sessions.insert(
                sx,
                Session {
                    user: ux,
                    items,
                    last_ts,
                    count,
                },
            );
        }
        Ok(())
    }

    fn load_dirty(&mut self, keys: Vec<Vec<u8>>) -> PyResult<()> {
        for k in keys {
            if k.len() < 3 || k[0] != b'D' {
                return Err(corrupt(format!("not a dirty key: {k:?}")));
            }
            let t = NODE_CODE
                .iter()
                .position(|&c| c == k[1])
                .ok_or_else(|| corrupt(format!("dirty key {k:?}")))?;
            let id = std::str::from_utf8(&k[2..]).map_err(|_| corrupt("a dirty id is not UTF-8".into()))?;
            let x = self.known(t, id)?;
            self.st.marks[t].insert(x);
        }
        Ok(())
    }

    // ---- staging a batch -----------------------------------------------------------------------
    /// Stages raw interaction payloads; returns `(index in values, position)` of each one the
    /// reference decoder must decide (its slot stays empty unless `stage_event` fills it).
    fn stage_raw(&mut self, values: &Bound<'_, PyList>, max_ts: i64) -> PyResult<Vec<(usize, usize)>> {
        let (limits, kinds) = self
            .wire
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("call configure_wire before stage_raw"))?;
        limits.max_ts = max_ts;
        let mut deferred = Vec::new();
        self.staged.evs.reserve(values.len());
        for (index, value) in values.iter().enumerate() {
            let raw = value.downcast::<PyBytes>().ok().map(|b| b.as_bytes());
            if !stage_payload(limits, kinds, &mut self.staged, raw) {
                deferred.push((index, self.staged.evs.len() - 1));
            }
        }
        Ok(deferred)
    }

    /// Stages the interactions of one partition's fetched record batches (`buf`: Kafka's
    /// record batch format, as a fetch response carries it; see `kafka.rs`). Records below
    /// `fetch_offset` are ignored, those below `committed` counted as replays. Returns
    /// `(deferred, kept, skipped, last_offset)`: `deferred` lists `(offset,
    /// timestamp, key, value, position)` of each record the reference decoder must decide,
    /// `last_offset` is that of the last kept record (-1 if none).
    #[pyo3(signature = (buf, fetch_offset, committed, max_ts, check_crc=true))]
    fn stage_kafka<'py>(
        &mut self,
        py: Python<'py>,
        buf: &[u8],
        fetch_offset: i64,
        committed: i64,
        max_ts: i64,
        check_crc: bool,
    ) -> PyResult<(Vec<DeferredRecord<'py>>, usize, usize, i64)> {
        let (limits, kinds) = self
            .wire
            .as_mut()
            .ok_or_else(|| PyRuntimeError::new_err("call configure_wire before stage_kafka"))?;
        limits.max_ts = max_ts;
        let staged = &mut self.staged;
        let (mut deferred, mut kept, mut skipped, mut last) = (Vec::new(), 0usize, 0usize, -1i64);
        kafka::for_each_record(buf, fetch_offset, check_crc, |r| {
            if r.offset < committed {
                skipped += 1;
                return;
            }
            kept += 1;
            last = r.offset;
            if !stage_payload(limits, kinds, staged, r.value) {
                let b = |x: Option<&[u8]>| x.map(|x| PyBytes::new(py, x));
                deferred.push((r.offset, r.timestamp, b(r.key), b(r.value), staged.evs.len() - 1));
            }
        })
        .map_err(kafka_error)?;
        Ok((deferred, kept, skipped, last))
    }

    /// Stages one event object (duck-typed like `graph_store.batch`), appended or into the
    /// slot at `position` that `stage_raw` left empty. The caller has validated it.
    #[pyo3(signature = (event, position=None))]
    fn stage_event(&mut self, event: &Bound<'_, PyAny>, position: Option<usize>) -> PyResult<()> {
        let ev = if event.hasattr("item_id")? {
            let u: String = event.getattr("user_id")?.extract()?;
            let i: String = event.getattr("item_id")?.extract()?;
            let s: String = event.getattr("session_id")?.extract()?;
            let ts: i64 = event.getattr("ts")?.extract()?;
            let w = event.getattr("weight")?;
            let inc = if w.is_none() {
                let kind: String = event.getattr("kind")?.extract()?;
                *self.kind_weights.get(&kind).ok_or_else(|| PyKeyError::new_err(kind))?
            } else {
                w.extract::<f64>()?
            };
            let st = &mut self.staged;
            Ev::Inter {
                u: st.span(&u),
                i: st.span(&i),
                s: st.span(&s),
                ts,
                inc,
            }
        } else {
            let a: String = event.getattr("src_user")?.extract()?;
            let b: String = event.getattr("dst_user")?.extract()?;
            let ts: i64 = event.getattr("ts")?.extract()?;
            let op = event.getattr("op")?;
            let op = op.downcast::<PyString>()?.to_str()?;
            let st = &mut self.staged;
            Ev::Follow {
                a: st.span(&a),
                b: st.span(&b),
                ts,
                follow: op == "follow",
            }
        };
        match position {
            None => self.staged.evs.push(ev),
            Some(p) => match self.staged.evs.get_mut(p) {
                Some(slot @ Ev::Hole) => *slot = ev,
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "position {p} is not an empty slot of this batch"
                    )))
                }
            },
        }
        Ok(())
    }

    fn discard_staged(&mut self) {
        self.staged.clear();
    }

    /// The staged events as tuples, for tests: `("interaction", user, item, session, ts, inc)`,
    /// `("follow", src, dst, ts, is_follow)`, or None for an empty slot.
    fn staged_events<'py>(&self, py: Python<'py>) -> PyResult<Vec<PyObject>> {
        let t = |span: (u32, u32)| &self.staged.text[span.0 as usize..span.1 as usize];
        self.staged
            .evs
            .iter()
            .map(|e| -> PyResult<PyObject> {
                Ok(match *e {
                    Ev::Inter { u, i, s, ts, inc } => ("interaction", t(u), t(i), t(s), ts, inc)
                        .into_pyobject(py)?
                        .into_any()
                        .unbind(),
                    Ev::Follow { a, b, ts, follow } => ("follow", t(a), t(b), ts, follow)
                        .into_pyobject(py)?
                        .into_any()
                        .unbind(),
                    Ev::Hole => py.None(),
                })
            })
            .collect()
    }

    fn staged_count(&self) -> usize {
        self.staged.evs.iter().filter(|e| !matches!(e, Ev::Hole)).count()
    }

    // ---- one commit ----------------------------------------------------------------------------
    /// Plans the staged events; returns `(keys, values, deletes, summary)` and holds the plan
    /// until `confirm` (after the write) or `abort`. `summary` is `(interactions, follows,
    /// unfollows, skipped, new users, new items, new sessions, new ui, new ii, uu change,
    /// touched edges, watermark or None)`.
    fn plan<'py>(&mut self, py: Python<'py>) -> PyResult<(commit::Lists<'py>, PyObject)> {
        if self.pending.is_some() {
            return Err(PyRuntimeError::new_err(
                "a plan is pending: confirm() or abort() it first",
            ));
        }
        let plan = plan::plan(&mut self.st, &self.staged, &self.cfg);
        self.staged.clear();
        for t in 0..3 {
            if self.st.nodes[t].ids.len() > u32::MAX as usize + 1 {
                plan::abort(&mut self.st, &plan);
                return Err(PyOverflowError::new_err(format!(
                    "more than 2**32 {} nodes: the u32 node index is exhausted",
                    ["user", "item", "session"][t]
                )));
            }
        }
        let out = commit::encode(py, &self.st, &plan)?;
        let s = plan.stats;
        let new = |t: usize| (self.st.nodes[t].ids.len() - plan.n0[t]) as u64;
        let summary = (
            s.interactions,
            s.follows,
            s.unfollows,
            s.skipped,
            new(USER),
            new(ITEM),
            new(SESSION),
            s.fresh_ui,
            s.fresh_ii,
            s.uu_change,
            s.touched,
            s.watermark,
        )
            .into_pyobject(py)?
            .into_any()
            .unbind();
        self.pending = Some(plan);
        Ok((out, summary))
    }

    fn confirm(&mut self) -> PyResult<()> {
        let plan = self
            .pending
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("no plan is pending"))?;
        plan::confirm(&mut self.st, plan);
        Ok(())
    }

    fn abort(&mut self) {
        if let Some(plan) = self.pending.take() {
            plan::abort(&mut self.st, &plan);
        }
        self.staged.clear();
    }

    // ---- reads of the mirrored state -----------------------------------------------------------
    fn node_index(&self, node_type: &str, node_id: &str) -> PyResult<Option<u32>> {
        Ok(self.st.nodes[self::node_type(node_type)?].get(node_id))
    }

    fn node_ids(&self, node_type: &str) -> PyResult<Vec<String>> {
        Ok(self.st.nodes[self::node_type(node_type)?]
            .ids
            .iter()
            .map(|s| s.to_string())
            .collect())
    }

    fn node_count(&self, node_type: &str) -> PyResult<usize> {
        Ok(self.st.nodes[self::node_type(node_type)?].ids.len())
    }

    /// `(user, items, last_ts, count)` of a session, or None.
    fn session(&self, session_id: &str) -> Option<(String, Vec<String>, i64, u32)> {
        let sx = self.st.nodes[SESSION].get(session_id)?;
        let s = self.st.sessions.get(&sx)?;
        let items = &self.st.nodes[ITEM].ids;
        Some((
            self.st.nodes[USER].ids[s.user as usize].to_string(),
            s.items.iter().map(|&i| items[i as usize].to_string()).collect(),
            s.last_ts,
            s.count,
        ))
    }

    fn dirty(&self, node_type: &str) -> PyResult<Vec<String>> {
        let t = self::node_type(node_type)?;
        let ids = &self.st.nodes[t].ids;
        Ok(self.st.marks[t].iter().map(|&x| ids[x as usize].to_string()).collect())
    }

    fn clear_dirty(&mut self, node_type: &str, ids: Vec<String>) -> PyResult<()> {
        let t = self::node_type(node_type)?;
        for id in ids {
            if let Some(x) = self.st.nodes[t].get(&id) {
                self.st.marks[t].remove(&x);
            }
        }
        Ok(())
    }
}

impl Kernel {
    fn known(&self, t: usize, id: &str) -> PyResult<u32> {
        self.st.nodes[t].get(id).ok_or_else(|| {
            corrupt(format!(
                "{} id {id:?} is referenced but has no index",
                ["user", "item", "session"][t]
            ))
        })
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Kernel>()?;
    m.add_function(wrap_pyfunction!(kafka::kafka_records, m)?)?;
    Ok(())
}

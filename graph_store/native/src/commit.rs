//! The keys and values one commit writes, as Python `bytes` for rocksdict's WriteBatch.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::codec::*;
use crate::plan::{Plan, State, ITEM, SESSION, USER};

pub type Lists<'py> = (Bound<'py, PyList>, Bound<'py, PyList>, Bound<'py, PyList>); // keys, values, deletes

/// The keys and values of a plan, and the keys it deletes: those of the Python commit. Only the
/// groups are in key order (D, E, I, N, P, S); rows within a group are not sorted, since the
/// store's vector memtable sorts once at flush (sorting here cost ~0.2 µs an event).
pub fn encode<'py>(py: Python<'py>, st: &State, plan: &Plan) -> PyResult<Lists<'py>> {
    // Collected first and made into lists at the end: cheaper than growing the lists by appends.
    let rows = plan.ui.len() + plan.ii.len() + plan.uu_put.len();
    let mut keys: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(2 * rows + plan.pop.len() + plan.sessions.len());
    let mut values: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(keys.capacity());
    let mut deletes: Vec<Bound<'py, PyBytes>> = Vec::new();
    let mut put = |k: &[u8], v: &[u8]| -> PyResult<()> {
        keys.push(PyBytes::new(py, k));
        values.push(PyBytes::new(py, v));
        Ok(())
    };
    let order = [ITEM, SESSION, USER]; // node type codes i < s < u
    for &t in &order {
        let ids = &st.nodes[t].ids;
        let mut marked: Vec<&str> = plan.new_marks[t].iter().map(|&x| &*ids[x as usize]).collect();
        marked.sort_unstable();
        for id in marked {
            put(&prefixed(b'D', NODE_CODE[t], id), b"")?;
        }
    }
    for (values_of, fwd, rev) in [
        (&plan.ui, EDGE_UI, EDGE_IU),
        (&plan.ii, EDGE_II, EDGE_II_REV),
        (&plan.uu_put, EDGE_UU, EDGE_UU_REV),
    ] {
        for (&k, &w) in values_of {
            put(&edge_key(fwd, k), &weight_value(w))?;
        }
        for (&k, &w) in values_of {
            put(&edge_key(rev, swap(k)), &weight_value(w))?;
        }
    }
    for &k in &plan.uu_del {
        deletes.push(PyBytes::new(py, &edge_key(EDGE_UU, k)));
        deletes.push(PyBytes::new(py, &edge_key(EDGE_UU_REV, swap(k))));
    }
    for &t in &order {
        let ids = &st.nodes[t].ids;
        for (x, id) in ids.iter().enumerate().skip(plan.n0[t]) {
            put(&index_key(NODE_CODE[t], x as u32), id.as_bytes())?;
        }
    }
    for &t in &order {
        let ids = &st.nodes[t].ids;
        let mut added: Vec<(&str, u32)> = ids
            .iter()
            .enumerate()
            .skip(plan.n0[t])
            .map(|(x, id)| (&**id, x as u32))
            .collect();
        added.sort_unstable();
        for (id, x) in added {
            put(&prefixed(b'N', NODE_CODE[t], id), &x.to_be_bytes())?;
        }
    }
    for (&i, &w) in &plan.pop {
        put(&pop_key(i), &weight_value(w))?;
    }
    let sids = &st.nodes[SESSION].ids;
    let (users, items) = (&st.nodes[USER].ids, &st.nodes[ITEM].ids);
    for (sx, s) in &plan.sessions {
        let names: Vec<&str> = s.items.iter().map(|&i| &*items[i as usize]).collect();
        let mut key = Vec::with_capacity(1 + sids[*sx as usize].len());
        key.push(b'S');
        key.extend_from_slice(sids[*sx as usize].as_bytes());
        put(
            &key,
            &session_value(s.last_ts, s.count, &users[s.user as usize], &names),
        )?;
    }
    Ok((
        PyList::new(py, keys)?,
        PyList::new(py, values)?,
        PyList::new(py, deletes)?,
    ))
}

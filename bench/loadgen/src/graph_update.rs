//! The compression scenarios' payload: a Mytosis-like graph update of about
//! 2,000 bytes, as compact JSON. Deterministic: message `seq` is the same in
//! every run and for every server. Consecutive updates touch nodes of one
//! graph (a pool of 200 ids) by the same three authors, so they share what
//! real updates share, which is what a context kept across messages
//! (`ws`'s default) can exploit.

use std::fmt::Write as _;

/// Changes per update: 15 make about 2,000 bytes.
const CHANGES: usize = 15;
const NODES: u64 = 200;
const AUTHORS: [&str; 3] = ["u-5f0c1e2a", "u-9b7d4a61", "u-c28e03f7"];
const TITLES: [&str; 12] = [
  "Quarterly plan",
  "Open questions",
  "Design review notes",
  "Launch checklist",
  "Customer interviews",
  "Architecture sketch",
  "Risks and mitigations",
  "Hiring pipeline",
  "Retro: sprint 42",
  "Budget draft",
  "Roadmap Q3",
  "Ideas parking lot",
];

/// splitmix64: a tiny, good-enough PRNG step.
fn mix(mut z: u64) -> u64 {
  z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
  z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
  z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
  z ^ (z >> 31)
}

/// `{"type":"update","seq":N,"graph":...,"changes":[{"id","path","value","clock","author"}...]}`;
/// JSON.stringify(JSON.parse(text)) gives the same text back.
pub fn graph_update(seq: u64) -> String {
  let mut out = String::with_capacity(2200);
  let _ = write!(
    out,
    "{{\"type\":\"update\",\"seq\":{seq},\"graph\":\"g-3e8a41c07d2b9f65\",\"changes\":["
  );
  let mut state = mix(seq ^ 0x6d79_746f_7369_7321);
  for i in 0..CHANGES {
    state = mix(state);
    let node = mix(state % NODES);
    let id = format!("{:016x}", node);
    let clock = 100_000 + seq * CHANGES as u64 + i as u64;
    let author = AUTHORS[(state >> 8) as usize % AUTHORS.len()];
    if i > 0 {
      out.push(',');
    }
    let _ = write!(out, "{{\"id\":\"{id}\",\"path\":\"nodes.{id}.props.");
    match (state >> 16) % 4 {
      0 => {
        let title = TITLES[(state >> 24) as usize % TITLES.len()];
        let _ = write!(out, "title\",\"value\":\"{title}\"");
      }
      1 => {
        let _ = write!(out, "x\",\"value\":{}", (state >> 24) % 4000);
      }
      2 => {
        let _ = write!(out, "collapsed\",\"value\":{}", (state >> 24) & 1 == 1);
      }
      _ => {
        let _ = write!(out, "color\",\"value\":\"#{:06x}\"", (state >> 24) & 0xff_ffff);
      }
    }
    let _ = write!(out, ",\"clock\":{clock},\"author\":\"{author}\"}}");
  }
  out.push_str("]}");
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn about_two_kilobytes_and_deterministic() {
    let a = graph_update(7);
    assert_eq!(a, graph_update(7));
    assert_ne!(a, graph_update(8));
    assert!((1800..2300).contains(&a.len()), "{}", a.len());
    assert_eq!(crate::common::json_number(a.as_bytes(), b"\"seq\":"), Some(7));
  }
}

//! The table behind a server's connection handles. A handle names a slot
//! (its low `SLOT_BITS`) and how many times the slot was taken before (the
//! bits above), so JS keeps its connection objects in an array by slot, not
//! in a map by handle, and a stale handle names no connection.
//!
//! A slot JS has heard of is reused only once JS has let go of it
//! (`release`, after its `Close` or `Abandoned` event): until then a call
//! from JS with the old handle could only have reached the old connection.

use std::sync::Arc;

use napi_derive::napi;

use super::registry::Connection;

/// Slots a server may use at once: 4 million. JS takes a handle's slot as
/// its low `HANDLE_SLOT_BITS` bits.
#[napi]
pub const HANDLE_SLOT_BITS: u32 = 22;
const SLOT_BITS: u32 = HANDLE_SLOT_BITS;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// Handles stay under 2^31, a small integer in V8 (no boxed number per
/// connection object).
const GENERATIONS: u32 = 1 << (31 - SLOT_BITS);

/// The connections of a server by handle, and the handles reserved for
/// upgrades and held for JS.
pub(super) struct Slots {
  /// Slot 0 is never used: handle 0 means the server itself in events.
  slots: Vec<Slot>,
  /// Slots free to take again, each under a handle not given out yet.
  free: Vec<u32>,
  open: usize,
  /// Counts connections opening, for `opened`.
  openings: u32,
}

struct Slot {
  /// The handle of the slot's tenant: upgrading, open, or ended and not
  /// released by JS; for a free slot, the handle its next tenant gets.
  handle: u32,
  /// When the connection opened, in `openings`.
  opened: u32,
  connection: Option<Arc<Connection>>,
}

impl Slots {
  pub(super) fn new() -> Slots {
    let never_used = Slot { handle: 0, opened: 0, connection: None };
    Slots { slots: vec![never_used], free: Vec::new(), open: 0, openings: 0 }
  }

  /// Takes a slot for a connection about to upgrade; `None` when all
  /// 4 million are taken.
  pub(super) fn reserve(&mut self) -> Option<u32> {
    if let Some(index) = self.free.pop() {
      return Some(self.slots[index as usize].handle);
    }
    let index = u32::try_from(self.slots.len()).ok().filter(|&index| index <= SLOT_MASK)?;
    self.slots.push(Slot { handle: index, opened: 0, connection: None });
    Some(index)
  }

  /// The connection of a reserved handle opened.
  pub(super) fn open(&mut self, handle: u32, connection: Arc<Connection>) {
    let opened = self.openings;
    if let Some(slot) = self.slot_mut(handle) {
      if slot.connection.replace(connection).is_none() {
        slot.opened = opened;
        self.openings = opened.wrapping_add(1);
        self.open += 1;
      }
    }
  }

  /// The connection of `handle` ended. Its slot stays taken until `release`.
  pub(super) fn close(&mut self, handle: u32) {
    if let Some(slot) = self.slot_mut(handle) {
      if slot.connection.take().is_some() {
        self.open -= 1;
      }
    }
  }

  /// Frees the slot of `handle` under the slot's next handle, unless its
  /// connection is open or the slot has moved on already.
  pub(super) fn release(&mut self, handle: u32) {
    if let Some(slot) = self.slot_mut(handle).filter(|slot| slot.connection.is_none()) {
      let generation = ((handle >> SLOT_BITS) + 1) % GENERATIONS;
      slot.handle = (generation << SLOT_BITS) | (handle & SLOT_MASK);
      self.free.push(handle & SLOT_MASK);
    }
  }

  pub(super) fn get(&self, handle: u32) -> Option<&Arc<Connection>> {
    let slot = self.slots.get((handle & SLOT_MASK) as usize)?;
    slot.connection.as_ref().filter(|_| slot.handle == handle)
  }

  /// How long ago connection `handle` opened, in connections opened since
  /// (`None` if it is not open): sorts in the order they opened.
  pub(super) fn age(&self, handle: u32) -> Option<u32> {
    let slot = self.slots.get((handle & SLOT_MASK) as usize)?;
    slot.connection.as_ref().filter(|_| slot.handle == handle)?;
    Some(self.openings.wrapping_sub(slot.opened))
  }

  /// The open connections and their handles.
  pub(super) fn iter(&self) -> impl Iterator<Item = (&u32, &Arc<Connection>)> {
    self.slots.iter().filter_map(|slot| slot.connection.as_ref().map(|c| (&slot.handle, c)))
  }

  pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Connection>> {
    self.slots.iter().filter_map(|slot| slot.connection.as_ref())
  }

  /// How many connections are open.
  pub(super) fn len(&self) -> usize {
    self.open
  }

  fn slot_mut(&mut self, handle: u32) -> Option<&mut Slot> {
    let slot = self.slots.get_mut((handle & SLOT_MASK) as usize)?;
    Some(slot).filter(|slot| slot.handle == handle && handle != 0)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::header_block::HeaderBlock;
  use crate::server::registry::Remote;

  fn connection() -> Arc<Connection> {
    let remote = Remote { ip: None, port: 0 };
    Arc::new(Connection::new(HeaderBlock::pack(std::iter::empty()), String::new(), remote, None))
  }

  #[test]
  fn handles_name_a_slot_from_1_and_stay_small_integers() {
    let mut slots = Slots::new();
    let handles: Vec<u32> = (0..3).map(|_| slots.reserve().unwrap()).collect();
    assert_eq!(handles.iter().map(|h| h & SLOT_MASK).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(handles.iter().all(|&h| h != 0 && h < 1 << 31));
  }

  #[test]
  fn a_slot_is_reused_only_after_release_and_under_a_new_handle() {
    let mut slots = Slots::new();
    let first = slots.reserve().unwrap();
    slots.open(first, connection());
    assert!(slots.get(first).is_some());
    slots.close(first);
    assert!(slots.get(first).is_none());
    let second = slots.reserve().unwrap();
    assert_ne!(second & SLOT_MASK, first & SLOT_MASK, "not released yet");
    slots.release(first);
    let third = slots.reserve().unwrap();
    assert_eq!(third & SLOT_MASK, first & SLOT_MASK);
    assert_ne!(third, first);
    slots.open(third, connection());
    assert!(slots.get(first).is_none(), "the old handle names nothing");
    slots.release(first);
    slots.release(third);
    assert!(slots.get(third).is_some(), "an open connection is not released");
    assert_eq!(slots.len(), 1);
    slots.release(second);
    slots.release(second);
    let (fourth, fifth) = (slots.reserve().unwrap(), slots.reserve().unwrap());
    assert_ne!(fourth & SLOT_MASK, fifth & SLOT_MASK, "a slot released twice is free once");
  }

  #[test]
  fn generations_wrap_within_31_bits() {
    let mut slots = Slots::new();
    let mut last = 0;
    for _ in 0..GENERATIONS + 2 {
      last = slots.reserve().unwrap();
      assert_eq!(last & SLOT_MASK, 1);
      assert!(last < 1 << 31);
      slots.release(last);
    }
    assert_eq!(last >> SLOT_BITS, 1);
  }

  #[test]
  fn iteration_lists_open_connections_with_their_handles() {
    let mut slots = Slots::new();
    let (a, b, c) = (slots.reserve().unwrap(), slots.reserve().unwrap(), slots.reserve().unwrap());
    slots.open(a, connection());
    slots.open(c, connection());
    let handles: Vec<u32> = slots.iter().map(|(&handle, _)| handle).collect();
    assert_eq!(handles, [a, c]);
    assert_eq!(slots.values().count(), 2);
    assert!(slots.get(b).is_none());
    slots.close(a);
    slots.release(a);
    let again = slots.reserve().unwrap();
    slots.open(again, connection());
    assert!(slots.age(again) < slots.age(c), "a reused slot is the newest");
  }
}

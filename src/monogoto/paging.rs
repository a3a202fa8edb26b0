//! Paging through the API's answers: a status batch read until every SIM
//! asked for was seen, and a `GET /things` listing that can resume where a
//! failed page left it. Generic over the page fetch, so they are tested
//! without HTTP.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ThingStatus;
use super::model::{ListedThing, StatusPage};

/// `GET /things` is asked for this many Things a page; it may answer fewer.
pub(crate) const THINGS_PAGE_SIZE: usize = 50;
/// A listing longer than this many pages is cut off: a server that never
/// answers an empty page must not keep discovery going forever.
const MAX_THINGS_PAGES: usize = 100_000;

/// Reads one batch page by page: `offset` advances by the number of Things
/// returned, until every requested Thing was seen, a page is empty, a page
/// brings no new Thing, or a page is shorter than the longest the server ever
/// sent (`page_cap` remembers it across batches): a server that caps its pages
/// below `limit` is read to the end, while a batch with SIMs unknown to the
/// account costs no extra request once a full page has been seen. A short page
/// that leaves out SIMs answered before (`known`, by position) is looked past
/// once, in case the server's pages got shorter; if the next page brings more,
/// the shorter size is the server's from then on.
pub(crate) async fn read_batch<F, Fut, E>(
    iccids: &[String],
    known: &[bool],
    page_cap: &AtomicUsize,
    mut fetch_page: F,
) -> Result<BatchAnswer, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<StatusPage, E>>,
{
    let wanted: HashSet<&str> = iccids.iter().map(String::as_str).collect();
    let mut seen: HashSet<String> = HashSet::with_capacity(wanted.len());
    let mut answer = BatchAnswer {
        things: Vec::with_capacity(wanted.len()),
        ..BatchAnswer::default()
    };
    let mut offset = 0;
    // The short page looked past, while the next one says what it was.
    let mut looked_past: Option<usize> = None;
    let mut probed = false;
    // Each page that continues the loop brings at least one new Thing, so
    // this bound is never reached by a well-behaved server.
    for _ in 0..=wanted.len() {
        let page = fetch_page(offset).await?;
        if page.returned == 0 {
            break;
        }
        let longest = page_cap
            .fetch_max(page.returned, Ordering::Relaxed)
            .max(page.returned);
        let before = seen.len();
        let returned = page.returned;
        for thing in page.things {
            if !wanted.contains(thing.iccid.as_str()) {
                // Not asked for: not ours to export (another shard's, say).
                answer.strangers += 1;
            } else if seen.insert(thing.iccid.clone()) {
                answer.things.push(thing);
            }
        }
        if let Some(short) = looked_past.take()
            && seen.len() > before
        {
            page_cap.store(short, Ordering::Relaxed);
        }
        if seen.len() == wanted.len() || seen.len() == before {
            break;
        }
        if returned < longest {
            let known_missing = iccids
                .iter()
                .zip(known)
                .any(|(iccid, &known)| known && !seen.contains(iccid));
            if probed || !known_missing {
                break;
            }
            probed = true;
            looked_past = Some(returned);
        }
        offset += returned;
    }
    Ok(answer)
}

/// What the API answered for one batch.
#[derive(Debug, Default)]
pub(crate) struct BatchAnswer {
    /// The SIMs asked for that it returned, each once.
    pub things: Vec<ThingStatus>,
    /// Entries for SIMs not asked for, which are ignored.
    pub(crate) strangers: usize,
    /// SIMs the API refused to be asked for (400 for them alone).
    pub(crate) rejected: Vec<String>,
}

/// A `GET /things` listing, page by page until a page comes back empty or
/// brings no new Thing. A page shorter than asked for does not end it: an API
/// may page fewer Things than `limit`, and only an empty page says there are
/// no more. It keeps its progress when a page fails, so it can resume.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) found: Vec<ListedThing>,
    seen: HashSet<String>,
    offset: usize,
    /// Pages answered so far: once complete, the requests a listing costs,
    /// the empty last page included, as the plan counts them.
    pub pages: usize,
}

impl Listing {
    /// A listing a previous process left unfinished, to go on from `offset`.
    pub(crate) fn resumed(found: Vec<ListedThing>, offset: usize, pages: usize) -> Listing {
        let mut seen = HashSet::with_capacity(found.len());
        let found = found
            .into_iter()
            .filter(|t| seen.insert(t.iccid.clone()))
            .collect();
        Listing {
            found,
            seen,
            offset,
            pages,
        }
    }

    /// Where the listing goes on from.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// Fetches pages from where it stopped until the listing is complete, or
    /// a page fails (the error is returned; what was listed so far stays).
    pub(crate) async fn resume<F, Fut, E>(&mut self, fetch_page: F) -> Result<(), E>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<(usize, Vec<ListedThing>), E>>,
    {
        self.resume_within(MAX_THINGS_PAGES, fetch_page).await
    }

    /// [`Listing::resume`], cut off after `max_pages` pages in all.
    async fn resume_within<F, Fut, E>(
        &mut self,
        max_pages: usize,
        mut fetch_page: F,
    ) -> Result<(), E>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<(usize, Vec<ListedThing>), E>>,
    {
        while self.pages < max_pages {
            let (returned, things) = fetch_page(self.offset).await?;
            self.pages += 1;
            let before = self.found.len();
            let seen = &mut self.seen;
            self.found
                .extend(things.into_iter().filter(|t| seen.insert(t.iccid.clone())));
            if returned == 0 || self.found.len() == before {
                return Ok(());
            }
            self.offset += returned;
        }
        tracing::warn!(
            pages = self.pages,
            sims = self.found.len(),
            "GET /things never answered an empty page: the listing is cut off here, and only the SIMs listed so far are followed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn iccids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("8988{i:015}")).collect()
    }

    fn status(iccid: &str) -> ThingStatus {
        ThingStatus {
            iccid: iccid.to_string(),
            ..ThingStatus::default()
        }
    }

    /// A server answering the requested ids in order, at most `cap` a page.
    fn server<'a>(
        ids: &'a [String],
        cap: usize,
        calls: &'a RefCell<Vec<usize>>,
    ) -> impl FnMut(usize) -> std::future::Ready<Result<StatusPage, ()>> + 'a {
        move |offset| {
            calls.borrow_mut().push(offset);
            let things: Vec<_> = ids
                .iter()
                .skip(offset)
                .take(cap)
                .map(|i| status(i))
                .collect();
            std::future::ready(Ok(StatusPage {
                returned: things.len(),
                things,
                field_errors: Vec::new(),
            }))
        }
    }

    fn block<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_batch_answered_whole_costs_one_request() {
        let ids = iccids(50);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(
            &ids,
            &[],
            &AtomicUsize::new(0),
            server(&ids, 50, &calls),
        ))
        .expect("ok")
        .things;
        assert_eq!(things.len(), 50);
        assert_eq!(*calls.borrow(), vec![0]);
    }

    #[test]
    fn a_capped_server_is_read_to_the_end() {
        let ids = iccids(50);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(
            &ids,
            &[],
            &AtomicUsize::new(0),
            server(&ids, 20, &calls),
        ))
        .expect("ok")
        .things;
        assert_eq!(things.len(), 50);
        assert_eq!(*calls.borrow(), vec![0, 20, 40]);
    }

    #[test]
    fn an_empty_page_stops() {
        let ids = iccids(10);
        let present = iccids(4);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(
            &ids,
            &[],
            &AtomicUsize::new(0),
            server(&present, 3, &calls),
        ))
        .expect("ok")
        .things;
        assert_eq!(things.len(), 4, "missing Things are simply not there");
        // The second page is shorter than the first: the server has no more.
        assert_eq!(*calls.borrow(), vec![0, 3]);
    }

    /// Unknown SIMs in a batch cost no extra page once the server's page size
    /// is known; before that, one page more tells a capped server apart.
    #[test]
    fn a_short_page_ends_the_batch_once_a_full_page_was_seen() {
        let ids = iccids(50);
        let present = iccids(45);
        let cap = AtomicUsize::new(0);
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(&ids, &[], &cap, server(&present, 50, &calls)))
            .expect("ok")
            .things;
        assert_eq!(things.len(), 45);
        assert_eq!(*calls.borrow(), vec![0, 45], "the first one asks again");

        let full = iccids(50);
        calls.borrow_mut().clear();
        block(read_batch(&full, &[], &cap, server(&full, 50, &calls))).expect("ok");
        calls.borrow_mut().clear();
        block(read_batch(&ids, &[], &cap, server(&present, 50, &calls))).expect("ok");
        assert_eq!(*calls.borrow(), vec![0], "45 of 50 is the end");
    }

    /// A server whose pages get shorter (50, then 25) is followed down: the
    /// SIMs answered before that a short page leaves out are asked for once
    /// more, and the shorter size holds from then on.
    #[test]
    fn a_server_whose_pages_get_shorter_loses_no_sim() {
        let ids = iccids(50);
        let cap = AtomicUsize::new(50);
        let known = [true; 50];
        let calls = RefCell::new(Vec::new());
        let things = block(read_batch(&ids, &known, &cap, server(&ids, 25, &calls)))
            .expect("ok")
            .things;
        assert_eq!(things.len(), 50);
        assert_eq!(*calls.borrow(), vec![0, 25]);
        assert_eq!(cap.load(Ordering::Relaxed), 25);
        // SIMs never answered are not looked for past a short page.
        let cap = AtomicUsize::new(50);
        calls.borrow_mut().clear();
        let things = block(read_batch(
            &ids,
            &[false; 50],
            &cap,
            server(&ids, 25, &calls),
        ))
        .expect("ok")
        .things;
        assert_eq!(things.len(), 25);
        assert_eq!(*calls.borrow(), vec![0]);
    }

    #[test]
    fn a_page_without_new_things_stops() {
        let ids = iccids(5);
        let mut calls = 0;
        let things = block(read_batch(&ids, &[], &AtomicUsize::new(0), |_offset| {
            calls += 1;
            // A server ignoring offset: always the same two Things.
            std::future::ready(Ok::<_, ()>(StatusPage {
                returned: 2,
                things: vec![status(&ids[0]), status(&ids[1])],
                field_errors: Vec::new(),
            }))
        }))
        .expect("ok")
        .things;
        assert_eq!(things.len(), 2);
        assert_eq!(calls, 2);
    }

    #[test]
    fn unrequested_things_are_ignored() {
        let ids = iccids(2);
        let stranger = status("898899999999999999");
        let things = block(read_batch(&ids, &[], &AtomicUsize::new(0), |_| {
            std::future::ready(Ok::<_, ()>(StatusPage {
                returned: 3,
                things: vec![stranger.clone(), status(&ids[0]), status(&ids[1])],
                field_errors: Vec::new(),
            }))
        }))
        .expect("ok");
        assert_eq!(things.strangers, 1, "counted, to be reported");
        let things = things.things;
        assert_eq!(
            things.iter().map(|t| t.iccid.as_str()).collect::<Vec<_>>(),
            vec![ids[0].as_str(), ids[1].as_str()]
        );
    }

    #[test]
    fn a_failed_page_fails_the_batch() {
        let ids = iccids(3);
        let result = block(read_batch(&ids, &[], &AtomicUsize::new(0), |_| {
            std::future::ready(Err::<StatusPage, _>("boom"))
        }));
        assert_eq!(result.map(|a| a.things.len()), Err("boom"));
    }

    /// What discovering a fleet found, and what it cost.
    struct Discovered {
        fleet: Vec<String>,
        found: Vec<String>,
        /// The offsets asked for, one a request.
        offsets: Vec<usize>,
        pages: usize,
    }

    /// Discovers a fleet of `n` from a server answering at most `cap` a page.
    fn discover(n: usize, cap: usize) -> Discovered {
        let fleet = iccids(n);
        let calls = RefCell::new(Vec::new());
        let mut listing = Listing::default();
        block(listing.resume(|offset| {
            calls.borrow_mut().push(offset);
            let page: Vec<String> = fleet
                .iter()
                .skip(offset)
                .take(THINGS_PAGE_SIZE.min(cap))
                .cloned()
                .collect();
            std::future::ready(Ok::<_, ()>((page.len(), listed(page))))
        }))
        .expect("ok");
        Discovered {
            fleet,
            found: listing.found.into_iter().map(|t| t.iccid).collect(),
            offsets: calls.into_inner(),
            pages: listing.pages,
        }
    }

    fn listed(iccids: Vec<String>) -> Vec<ListedThing> {
        iccids
            .into_iter()
            .map(|iccid| ListedThing {
                iccid,
                inactive: None,
            })
            .collect()
    }

    #[test]
    fn a_listing_resumes_where_a_failed_page_left_it() {
        let fleet = iccids(120);
        let page = |offset: usize| -> (usize, Vec<ListedThing>) {
            let p: Vec<String> = fleet
                .iter()
                .skip(offset)
                .take(THINGS_PAGE_SIZE)
                .cloned()
                .collect();
            (p.len(), listed(p))
        };
        let mut listing = Listing::default();
        let mut calls = Vec::new();
        let first = block(listing.resume(|offset| {
            calls.push(offset);
            std::future::ready(if offset == 50 {
                Err("deadline")
            } else {
                Ok(page(offset))
            })
        }));
        assert_eq!(first, Err("deadline"));
        assert_eq!(listing.found.len(), 50);
        block(listing.resume(|offset| {
            calls.push(offset);
            std::future::ready(Ok::<_, &str>(page(offset)))
        }))
        .expect("completes");
        assert_eq!(listing.found, listed(fleet));
        assert_eq!(
            calls,
            vec![0, 50, 50, 100, 120],
            "the failed page is asked again, nothing before it"
        );
        assert_eq!(listing.pages, 4, "the pages answered, the failed one not");
    }

    #[test]
    fn discovery_pages_until_an_empty_page() {
        let d = discover(120, 50);
        assert_eq!(d.found, d.fleet);
        assert_eq!(
            d.offsets,
            vec![0, 50, 100, 120],
            "a short page may not be the last: only an empty one ends the listing"
        );
        assert_eq!(d.pages, d.offsets.len(), "the empty page is a request too");

        let d = discover(100, 50);
        assert_eq!(d.found, d.fleet);
        assert_eq!(d.offsets, vec![0, 50, 100]);
        assert_eq!(d.pages, 3);

        let d = discover(0, 50);
        assert!(d.found.is_empty());
        assert_eq!((d.offsets, d.pages), (vec![0], 1));
    }

    #[test]
    fn a_server_paging_fewer_than_asked_is_listed_whole() {
        let d = discover(75, 20);
        assert_eq!(d.found.len(), 75);
        assert_eq!(d.found, d.fleet);
        assert_eq!(d.offsets, vec![0, 20, 40, 60, 75]);
        assert_eq!(d.pages, 5);
    }

    #[test]
    fn a_listing_page_without_new_things_stops() {
        let fleet = iccids(3);
        let mut listing = Listing::default();
        let mut calls = 0;
        // A server ignoring offset: always the same three Things.
        block(listing.resume(|_offset| {
            calls += 1;
            std::future::ready(Ok::<_, ()>((fleet.len(), listed(fleet.clone()))))
        }))
        .expect("ok");
        assert_eq!(listing.found, listed(fleet.clone()));
        assert_eq!((calls, listing.pages), (2, 2));
    }

    #[test]
    fn a_listing_that_never_ends_is_cut_off() {
        let mut listing = Listing::default();
        let mut next = 0usize;
        block(listing.resume_within(3, |_| {
            let page: Vec<String> = (next..next + THINGS_PAGE_SIZE)
                .map(|i| format!("8988{i:015}"))
                .collect();
            next += THINGS_PAGE_SIZE;
            std::future::ready(Ok::<_, ()>((page.len(), listed(page))))
        }))
        .expect("cut off, not failed");
        assert_eq!(listing.pages, 3);
        assert_eq!(listing.found.len(), 3 * THINGS_PAGE_SIZE);
    }
}

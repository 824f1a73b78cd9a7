//! The provider conformance suite (tests/src/conformance.rs), run against
//! every provider: a provider passes it or it does not ship.

use trafego_tests::conformance::backends;
use trafego_tests::conformance_suite;

conformance_suite!(zonefile, backends::ZoneFile::start().await);
conformance_suite!(cloudflare, backends::Cloudflare::start().await);
conformance_suite!(
    route53,
    trafego_tests::conformance::route53::Route53::start().await
);

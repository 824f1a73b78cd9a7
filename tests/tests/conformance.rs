//! The provider conformance suite (tests/src/conformance.rs), run against
//! every provider: a provider passes it or it does not ship.

use trafego_tests::conformance::{backends, rfc2136};
use trafego_tests::conformance_suite;

conformance_suite!(zonefile, backends::ZoneFile::start().await);
conformance_suite!(cloudflare, backends::Cloudflare::start().await);
conformance_suite!(rfc2136_knot, rfc2136::Rfc2136::knot().await);
conformance_suite!(rfc2136_pdns, rfc2136::Rfc2136::pdns().await);
conformance_suite!(
    powerdns,
    trafego_tests::conformance::powerdns::PowerDns::start().await
);
conformance_suite!(
    digitalocean,
    trafego_tests::conformance::digitalocean::DigitalOcean::start().await
);
conformance_suite!(
    route53,
    trafego_tests::conformance::route53::Route53::start().await
);

//! AWS Signature Version 4 for Route53, with the `aws-sigv4` crate: every
//! attempt of every request is signed anew (method, URL, `host`, `x-amz-date`
//! and a hash of the body) in the credential scope Route53 checks, which is
//! its partition's signing region whatever `ROUTE53_REGION` says (Route53 is
//! a global service: `us-east-1` in the `aws` partition). The secret key is
//! used here only, never logged and never sent: only the signature is.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::RequestBuilder;
use reqwest::header::HeaderValue;

use super::super::ProviderError;
use super::super::http::{Authorize, Call};

/// The service name in a Route53 credential scope.
pub const SERVICE: &str = "route53";

/// The region Route53 requests are signed for in the partition of `region`
/// (`eu-west-2` and every other commercial region sign in `us-east-1`).
pub fn signing_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "cn-northwest-1"
    } else if region.starts_with("us-gov-") {
        "us-gov-west-1"
    } else {
        "us-east-1"
    }
}

/// The Route53 endpoint of the partition of `region`.
pub fn default_endpoint(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "https://route53.amazonaws.com.cn"
    } else if region.starts_with("us-gov-") {
        "https://route53.us-gov.amazonaws.com"
    } else {
        "https://route53.amazonaws.com"
    }
}

/// Signs each attempt with SigV4. `Debug` shows the access key id only.
pub struct SigV4 {
    credentials: Credentials,
    region: &'static str,
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4")
            .field("access_key", &self.credentials.access_key_id())
            .field("secret_key", &"<redacted>")
            .field("region", &self.region)
            .finish()
    }
}

impl SigV4 {
    /// Credentials for the partition of `region`. Refuses an empty key or
    /// one that cannot be sent, without echoing either.
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Result<Self, ProviderError> {
        if access_key.is_empty() || secret_key.is_empty() {
            return Err(ProviderError::Unauthorized(
                "no AWS access key or secret key configured".into(),
            ));
        }
        let printable = |s: &str| s.chars().all(|c| c.is_ascii_graphic());
        if !printable(access_key) || !printable(secret_key) {
            return Err(ProviderError::Unauthorized(
                "the AWS access key or secret key holds characters a key never has".into(),
            ));
        }
        Ok(SigV4 {
            credentials: Credentials::new(access_key, secret_key, None, None, "trafego-dns"),
            region: signing_region(region),
        })
    }
}

impl Authorize for SigV4 {
    fn authorize(
        &self,
        call: &Call<'_>,
        mut request: RequestBuilder,
    ) -> Result<RequestBuilder, ProviderError> {
        let failed = |what: &str| {
            ProviderError::Other(format!("{}: cannot sign the request ({what})", call.what()))
        };
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|_| failed("signing parameters"))?
            .into();
        let signable = SignableRequest::new(
            call.method.as_str(),
            call.url.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(call.body.unwrap_or_default()),
        )
        .map_err(|_| failed("request"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|_| failed("signature"))?
            .into_parts();
        let (headers, _query) = instructions.into_parts();
        for h in headers {
            let mut value = HeaderValue::from_str(h.value()).map_err(|_| failed("header"))?;
            value.set_sensitive(h.sensitive() || h.name().eq_ignore_ascii_case("authorization"));
            request = request.header(h.name(), value);
        }
        Ok(request)
    }
}

//! The AWS regions tozai knows, so that a config naming a region that does not exist (a
//! typo such as `ap-northeast-9`, `ap-north-1`) is refused when it is checked, not when a
//! Lambda first calls AWS there.
//!
//! The table holds every region open to customers as of late 2026 in the commercial
//! partition (`aws`), China (`aws-cn`), AWS GovCloud (US) (`aws-us-gov`) and the AWS
//! European Sovereign Cloud (`aws-eusc`), as the AWS SDK's partition data lists them. Regions of other partitions (the isolated `us-iso-*`,
//! `us-isob-*`...), and any region AWS opens after this release, are allowed by the
//! config's top-level `extra_aws_regions = ["xx-new-1"]`: a config key, so the CLI and the
//! Lambdas, which read the same file, give the same answer.
//!
//! ```
//! use tozai::regions::{is_known, partition};
//! assert!(is_known("ap-northeast-3", &[]));
//! assert!(!is_known("ap-northeast-9", &[]));
//! assert!(is_known("ap-northeast-9", &["ap-northeast-9".to_owned()]));
//! assert_eq!(partition("cn-north-1"), Some("aws-cn"));
//! ```

/// Every known region and its partition, sorted by name.
pub const KNOWN: &[(&str, &str)] = &[
    ("af-south-1", "aws"),           // Africa (Cape Town)
    ("ap-east-1", "aws"),            // Asia Pacific (Hong Kong)
    ("ap-east-2", "aws"),            // Asia Pacific (Taipei)
    ("ap-northeast-1", "aws"),       // Asia Pacific (Tokyo)
    ("ap-northeast-2", "aws"),       // Asia Pacific (Seoul)
    ("ap-northeast-3", "aws"),       // Asia Pacific (Osaka)
    ("ap-south-1", "aws"),           // Asia Pacific (Mumbai)
    ("ap-south-2", "aws"),           // Asia Pacific (Hyderabad)
    ("ap-southeast-1", "aws"),       // Asia Pacific (Singapore)
    ("ap-southeast-2", "aws"),       // Asia Pacific (Sydney)
    ("ap-southeast-3", "aws"),       // Asia Pacific (Jakarta)
    ("ap-southeast-4", "aws"),       // Asia Pacific (Melbourne)
    ("ap-southeast-5", "aws"),       // Asia Pacific (Malaysia)
    ("ap-southeast-6", "aws"),       // Asia Pacific (New Zealand)
    ("ap-southeast-7", "aws"),       // Asia Pacific (Thailand)
    ("ca-central-1", "aws"),         // Canada (Central)
    ("ca-west-1", "aws"),            // Canada West (Calgary)
    ("cn-north-1", "aws-cn"),        // China (Beijing)
    ("cn-northwest-1", "aws-cn"),    // China (Ningxia)
    ("eu-central-1", "aws"),         // Europe (Frankfurt)
    ("eu-central-2", "aws"),         // Europe (Zurich)
    ("eu-north-1", "aws"),           // Europe (Stockholm)
    ("eu-south-1", "aws"),           // Europe (Milan)
    ("eu-south-2", "aws"),           // Europe (Spain)
    ("eu-west-1", "aws"),            // Europe (Ireland)
    ("eu-west-2", "aws"),            // Europe (London)
    ("eu-west-3", "aws"),            // Europe (Paris)
    ("eusc-de-east-1", "aws-eusc"),  // AWS European Sovereign Cloud (Germany)
    ("il-central-1", "aws"),         // Israel (Tel Aviv)
    ("me-central-1", "aws"),         // Middle East (UAE)
    ("me-south-1", "aws"),           // Middle East (Bahrain)
    ("mx-central-1", "aws"),         // Mexico (Central)
    ("sa-east-1", "aws"),            // South America (São Paulo)
    ("us-east-1", "aws"),            // US East (N. Virginia)
    ("us-east-2", "aws"),            // US East (Ohio)
    ("us-gov-east-1", "aws-us-gov"), // AWS GovCloud (US-East)
    ("us-gov-west-1", "aws-us-gov"), // AWS GovCloud (US-West)
    ("us-west-1", "aws"),            // US West (N. California)
    ("us-west-2", "aws"),            // US West (Oregon)
];

/// The partition of a known region.
pub fn partition(region: &str) -> Option<&'static str> {
    KNOWN
        .binary_search_by(|(name, _)| name.cmp(&region))
        .ok()
        .map(|i| KNOWN[i].1)
}

/// True when `region` is in the table or among `extra` (the config's `extra_aws_regions`).
pub fn is_known(region: &str, extra: &[String]) -> bool {
    partition(region).is_some() || extra.iter().any(|e| e == region)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::check_aws_region;

    #[test]
    fn the_table_is_sorted_and_every_name_is_a_region_name() {
        assert!(
            KNOWN.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no duplicates"
        );
        for (name, _) in KNOWN {
            check_aws_region(name).unwrap();
        }
    }

    #[test]
    fn known_and_unknown() {
        let rows = [
            ("ap-northeast-1", true),
            ("ap-northeast-3", true),
            ("us-gov-west-1", true),
            ("cn-northwest-1", true),
            ("ap-east-2", true),
            ("mx-central-1", true),
            ("eusc-de-east-1", true),
            ("eusc-de-west-1", false),
            ("ap-northeast-4", false),
            ("ap-north-1", false),
            ("us-iso-east-1", false),
            ("AP-NORTHEAST-1", false),
            ("", false),
        ];
        for (region, known) in rows {
            assert_eq!(is_known(region, &[]), known, "{region}");
        }
        assert!(is_known("us-iso-east-1", &["us-iso-east-1".to_owned()]));
        assert_eq!(partition("eusc-de-east-1"), Some("aws-eusc"));
    }
}

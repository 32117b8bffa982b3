//! Synthetic patients: deterministic, with names built from syllables.

/// splitmix64: a small deterministic generator, so every run seeds the same patients.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_ca4e_7a17_0001)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.below(xs.len() as u64)).unwrap_or(0);
        xs.get(i).copied().unwrap_or_default()
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "ren", "dor", "mi", "sa", "lo", "ber", "an", "ta", "vel", "mor", "ix", "el", "bra", "du", "fen", "gor", "ha", "is", "jo", "kel",
    "lin", "mar", "nor", "ol", "pen", "qui", "ros", "sten", "tor", "ul", "vin", "wes", "yar", "zan", "che", "shi", "tho", "ard", "wick",
    "ley", "ton", "son", "berg", "ford", "dale", "ham", "ridge",
];
const STREETS: &[&str] = &["Elm", "Oak", "Maple", "Cedar", "Birch", "Willow", "Aspen", "Juniper", "Linden", "Poplar"];
const STREET_KINDS: &[&str] = &["Street", "Avenue", "Road", "Lane", "Court", "Way"];
const GENDERS: &[&str] = &["female", "male", "female", "male", "other", "unknown"];

/// One synthetic patient: names built from syllables (no real person's file holds them).
pub(crate) struct Person {
    family: String,
    pub(crate) given: Vec<String>,
    pub(crate) birth: String,
    gender: &'static str,
    phone: String,
    street: String,
    city: String,
    postal: String,
}

fn capitalized(parts: &[&str]) -> String {
    let joined: String = parts.concat();
    let mut c = joined.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

pub(crate) fn word(r: &mut Rng, min: u64, max: u64) -> String {
    let n = min + r.below(max - min + 1);
    let parts: Vec<&str> = (0..n).map(|_| r.pick(SYLLABLES)).collect();
    capitalized(&parts)
}

impl Person {
    pub(crate) fn generate(i: usize) -> Person {
        let mut r = Rng::new(i as u64);
        let family = word(&mut r, 2, 3);
        let mut given = vec![word(&mut r, 2, 2)];
        if r.below(3) == 0 {
            given.push(word(&mut r, 1, 2));
        }
        let birth = format!("{:04}-{:02}-{:02}", 1930 + r.below(95), 1 + r.below(12), 1 + r.below(28));
        Person {
            family,
            given,
            birth,
            gender: r.pick(GENDERS),
            phone: format!("+1 {:03} 555 {:04}", 200 + r.below(800), r.below(10_000)),
            street: format!("{} {} {}", 1 + r.below(999), r.pick(STREETS), r.pick(STREET_KINDS)),
            city: word(&mut r, 2, 3) + "ville",
            postal: format!("{:05}", r.below(100_000)),
        }
    }

    pub(crate) fn fhir_json(&self) -> Vec<u8> {
        serde_json::json!({
            "resourceType": "Patient",
            "active": true,
            "name": [{"use": "official", "family": self.family, "given": self.given}],
            "gender": self.gender,
            "birthDate": self.birth,
            "telecom": [{"system": "phone", "value": self.phone, "use": "mobile"}],
            "address": [{"use": "home", "line": [self.street], "city": self.city, "postalCode": self.postal, "country": "US"}]
        })
        .to_string()
        .into_bytes()
    }

    /// The family name as the search compares it (folded; our names are plain ASCII).
    pub(crate) fn family_key(&self) -> String {
        self.family.to_ascii_lowercase()
    }
}

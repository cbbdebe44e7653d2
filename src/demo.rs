//! The built-in demo data set: a small shop with coherent customers.
//!
//! Why: every recipe in the README and every pipeline in `sql/` must run on a fresh
//! machine without downloading data. The generator is deterministic (a fixed ChaCha8
//! seed and a fixed clock), so tests can assert on its results: a runner who browses
//! running gear should be recommended running gear.
//!
//! Tables: `products` (300), `users` (200), `events` (≈ 6,000 views, clicks,
//! add-to-carts and purchases over the 60 days before 2026-11-01).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One product category: what its products are called and what they are like.
struct Category {
    name: &'static str,
    brands: &'static [&'static str],
    items: &'static [&'static str],
    qualities: &'static [&'static str],
    uses: &'static [&'static str],
    price_range: (f64, f64),
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "running",
        brands: &["Stride", "Pacer", "TrailFox", "Kinetic"],
        items: &[
            "running shoes",
            "trail running shoes",
            "running shorts",
            "running socks",
            "GPS running watch",
            "hydration vest",
            "reflective running jacket",
            "marathon racing flats",
        ],
        qualities: &[
            "lightweight",
            "breathable",
            "cushioned",
            "responsive",
            "moisture-wicking",
        ],
        uses: &[
            "long-distance training",
            "race day",
            "trail runs",
            "interval sessions",
            "your first marathon",
        ],
        price_range: (15.0, 220.0),
    },
    Category {
        name: "yoga",
        brands: &["Lotus", "Zenith", "Asana Co"],
        items: &[
            "yoga mat",
            "cork yoga block",
            "yoga strap",
            "meditation cushion",
            "high-waist yoga leggings",
            "non-slip yoga towel",
        ],
        qualities: &[
            "eco-friendly",
            "non-slip",
            "extra thick",
            "stretchy",
            "sweat-resistant",
        ],
        uses: &[
            "hot yoga",
            "daily stretching",
            "pilates classes",
            "mindful meditation",
            "restorative practice",
        ],
        price_range: (10.0, 120.0),
    },
    Category {
        name: "cycling",
        brands: &["Velo", "Chainline", "Peloton Gear"],
        items: &[
            "road bike helmet",
            "padded cycling shorts",
            "clipless pedals",
            "bike repair kit",
            "LED bike light set",
            "cycling gloves",
            "carbon water bottle cage",
        ],
        qualities: &[
            "aerodynamic",
            "ventilated",
            "durable",
            "lightweight",
            "high-visibility",
        ],
        uses: &[
            "road cycling",
            "commuting to work",
            "gravel rides",
            "century rides",
            "indoor trainer sessions",
        ],
        price_range: (12.0, 250.0),
    },
    Category {
        name: "hiking",
        brands: &["Summit", "Ridgeway", "NorthTrail"],
        items: &[
            "waterproof hiking boots",
            "trekking poles",
            "35L hiking backpack",
            "insulated down jacket",
            "camping headlamp",
            "merino wool base layer",
        ],
        qualities: &["waterproof", "rugged", "insulated", "packable", "windproof"],
        uses: &[
            "multi-day treks",
            "alpine hiking",
            "winter camping",
            "weekend backpacking",
            "mountain expeditions",
        ],
        price_range: (20.0, 320.0),
    },
    Category {
        name: "coffee",
        brands: &["Barista Pro", "BeanCraft", "Morning Ritual"],
        items: &[
            "espresso machine",
            "burr coffee grinder",
            "pour-over coffee dripper",
            "milk frother",
            "single-origin coffee beans",
            "insulated travel mug",
        ],
        qualities: &[
            "programmable",
            "stainless steel",
            "freshly roasted",
            "precision",
            "compact",
        ],
        uses: &[
            "morning espresso",
            "latte art at home",
            "cold brew",
            "the office kitchen",
            "slow weekend brewing",
        ],
        price_range: (8.0, 650.0),
    },
    Category {
        name: "audio",
        brands: &["SoundWave", "Acoustix", "Decibel"],
        items: &[
            "noise-cancelling headphones",
            "wireless earbuds",
            "bluetooth speaker",
            "studio monitor headphones",
            "portable DAC amplifier",
            "soundbar",
        ],
        qualities: &[
            "noise-cancelling",
            "high-fidelity",
            "wireless",
            "long battery life",
            "bass-boosted",
        ],
        uses: &[
            "commuting",
            "music production",
            "home cinema",
            "podcasts",
            "focused work",
        ],
        price_range: (25.0, 450.0),
    },
    Category {
        name: "gaming",
        brands: &["PixelForge", "RapidFire", "GameCore"],
        items: &[
            "mechanical gaming keyboard",
            "wireless gaming mouse",
            "gaming headset",
            "controller charging dock",
            "curved gaming monitor",
            "ergonomic gaming chair",
        ],
        qualities: &[
            "RGB backlit",
            "low-latency",
            "ergonomic",
            "programmable",
            "tournament-grade",
        ],
        uses: &[
            "competitive FPS",
            "marathon gaming sessions",
            "streaming",
            "console gaming",
            "esports practice",
        ],
        price_range: (20.0, 500.0),
    },
    Category {
        name: "baby",
        brands: &["LittleSteps", "CuddleCo", "Tiny Bloom"],
        items: &[
            "convertible baby stroller",
            "organic cotton onesie",
            "baby monitor",
            "silicone feeding set",
            "baby carrier",
            "crib mattress",
        ],
        qualities: &[
            "organic",
            "hypoallergenic",
            "BPA-free",
            "adjustable",
            "gentle",
        ],
        uses: &[
            "newborns",
            "daily walks",
            "peaceful nights",
            "first solid foods",
            "growing toddlers",
        ],
        price_range: (10.0, 400.0),
    },
    Category {
        name: "skincare",
        brands: &["Glow Lab", "PureSkin", "Dermaleaf"],
        items: &[
            "vitamin C serum",
            "hydrating face moisturizer",
            "mineral sunscreen SPF 50",
            "gentle foaming cleanser",
            "retinol night cream",
            "hyaluronic acid toner",
        ],
        qualities: &[
            "fragrance-free",
            "dermatologist-tested",
            "vegan",
            "lightweight",
            "non-comedogenic",
        ],
        uses: &[
            "sensitive skin",
            "daily protection",
            "anti-aging routines",
            "oily skin",
            "a morning glow",
        ],
        price_range: (9.0, 90.0),
    },
    Category {
        name: "pets",
        brands: &["Pawsome", "TailWag", "Whisker & Co"],
        items: &[
            "orthopedic dog bed",
            "cat scratching tower",
            "grain-free dog food",
            "retractable dog leash",
            "interactive cat toy",
            "pet grooming brush",
        ],
        qualities: &[
            "durable",
            "washable",
            "natural",
            "chew-resistant",
            "vet-approved",
        ],
        uses: &[
            "large dogs",
            "indoor cats",
            "senior pets",
            "playful puppies",
            "daily grooming",
        ],
        price_range: (6.0, 180.0),
    },
];

/// Products per category.
const PRODUCTS_PER_CATEGORY: usize = 30;
/// Number of users.
const USERS: usize = 200;
/// The fixed "now" of the demo: 2026-11-01T00:00:00Z, in microseconds.
const DEMO_NOW_MICROS: i64 = 1_793_491_200_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// The demo tables `products`, `users` and `events`, in memory (never stored).
pub fn tables() -> Result<Vec<(&'static str, Arc<MemTable>)>> {
    let data = generate();
    [
        ("products", data.products),
        ("users", data.users),
        ("events", data.events),
    ]
    .into_iter()
    .map(|(name, batch)| {
        Ok((
            name,
            Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?),
        ))
    })
    .collect()
}

/// The generated tables.
pub struct DemoData {
    /// `products(product_id, title, description, category, brand, price)`.
    pub products: RecordBatch,
    /// `users(user_id, name, country, favourite_category)`.
    pub users: RecordBatch,
    /// `events(event_id, user_id, product_id, event_type, ts)`.
    pub events: RecordBatch,
}

/// Generates the demo data; the same every time.
pub fn generate() -> DemoData {
    let mut rng = ChaCha8Rng::seed_from_u64(20261101);
    let products = generate_products(&mut rng);
    let (users, tastes) = generate_users(&mut rng);
    let events = generate_events(&mut rng, &tastes);
    DemoData {
        products,
        users,
        events,
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn generate_products(rng: &mut ChaCha8Rng) -> RecordBatch {
    let (mut ids, mut titles, mut descriptions, mut categories, mut brands, mut prices) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (c, category) in CATEGORIES.iter().enumerate() {
        for p in 0..PRODUCTS_PER_CATEGORY {
            let brand = pick(rng, category.brands);
            let item = category.items[p % category.items.len()];
            let quality = pick(rng, category.qualities);
            let second = pick(rng, category.qualities);
            let usage = pick(rng, category.uses);
            ids.push((c * PRODUCTS_PER_CATEGORY + p + 1) as i64);
            titles.push(format!("{brand} {quality} {item}"));
            descriptions.push(format!(
                "A {second} {item} from {brand}, made for {usage}. {} design you will reach for every day.",
                capitalise(quality)
            ));
            categories.push(category.name);
            brands.push(*brand);
            let (low, high) = category.price_range;
            prices
                .push(((low + rng.random::<f64>() * (high - low)) * 100.0).round() / 100.0 - 0.01);
        }
    }
    batch(vec![
        ("product_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("title", Arc::new(StringArray::from(titles))),
        ("description", Arc::new(StringArray::from(descriptions))),
        ("category", Arc::new(StringArray::from(categories))),
        ("brand", Arc::new(StringArray::from(brands))),
        ("price", Arc::new(Float64Array::from(prices))),
    ])
}

/// `count` product texts (title and description, 10 to 60 words) in the demo's style,
/// for benchmarks that need a realistic catalogue larger than the demo's.
pub fn catalogue_texts(count: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let category = pick(&mut rng, CATEGORIES);
            let item = pick(&mut rng, category.items);
            let brand = pick(&mut rng, category.brands);
            let target_words = rng.random_range(10..=60);
            let mut text = format!("{brand} {} {item}.", pick(&mut rng, category.qualities));
            while text.split_whitespace().count() < target_words {
                text.push_str(&format!(
                    " {} and {}, made for {}.",
                    capitalise(pick::<&str>(&mut rng, category.qualities)),
                    pick(&mut rng, category.qualities),
                    pick(&mut rng, category.uses)
                ));
            }
            text.split_whitespace()
                .take(target_words)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// A user's taste: a favourite category and a second one.
struct Taste {
    favourite: usize,
    second: usize,
}

fn generate_users(rng: &mut ChaCha8Rng) -> (RecordBatch, Vec<Taste>) {
    const FIRST: &[&str] = &[
        "Ana", "Ben", "Chloé", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kai",
        "Lena", "Mateo", "Nora", "Omar", "Priya",
    ];
    const COUNTRIES: &[&str] = &["DE", "FR", "US", "GB", "IN", "JP", "BR", "ES"];
    let mut tastes = Vec::with_capacity(USERS);
    let (mut ids, mut names, mut countries, mut favourites) = (vec![], vec![], vec![], vec![]);
    for u in 0..USERS {
        let favourite = u % CATEGORIES.len();
        let second = (favourite + 1 + rng.random_range(0..CATEGORIES.len() - 1)) % CATEGORIES.len();
        ids.push(u as i64 + 1);
        names.push(format!(
            "{} {}",
            pick(rng, FIRST),
            (b'A' + (u % 26) as u8) as char
        ));
        countries.push(*pick(rng, COUNTRIES));
        favourites.push(CATEGORIES[favourite].name);
        tastes.push(Taste { favourite, second });
    }
    let batch = batch(vec![
        ("user_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("name", Arc::new(StringArray::from(names))),
        ("country", Arc::new(StringArray::from(countries))),
        (
            "favourite_category",
            Arc::new(StringArray::from(favourites)),
        ),
    ]);
    (batch, tastes)
}

fn generate_events(rng: &mut ChaCha8Rng, tastes: &[Taste]) -> RecordBatch {
    let (mut ids, mut users, mut products, mut types, mut times) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (u, taste) in tastes.iter().enumerate() {
        // The last 10 users are new: no behaviour (cold start).
        if u >= USERS - 10 {
            continue;
        }
        let sessions = rng.random_range(3..10);
        for _ in 0..sessions {
            let roll = rng.random::<f64>();
            let category = if roll < 0.75 {
                taste.favourite
            } else if roll < 0.93 {
                taste.second
            } else {
                rng.random_range(0..CATEGORIES.len())
            };
            let session_start = DEMO_NOW_MICROS - rng.random_range(0..60 * DAY_MICROS);
            for step in 0..rng.random_range(2..7) {
                let product = (category * PRODUCTS_PER_CATEGORY
                    + rng.random_range(0..PRODUCTS_PER_CATEGORY)
                    + 1) as i64;
                let ts = session_start + step * rng.random_range(20_000_000..300_000_000);
                let mut push = |event_type: &'static str, offset: i64| {
                    ids.push(ids.len() as i64 + 1);
                    users.push(u as i64 + 1);
                    products.push(product);
                    types.push(event_type);
                    times.push(ts + offset);
                };
                push("view", 0);
                if rng.random::<f64>() < 0.45 {
                    push("click", 5_000_000);
                    if rng.random::<f64>() < 0.35 {
                        push("add_to_cart", 60_000_000);
                        if rng.random::<f64>() < 0.5 {
                            push("purchase", 300_000_000);
                        }
                    }
                }
            }
        }
    }
    batch(vec![
        ("event_id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("user_id", Arc::new(Int64Array::from(users))),
        ("product_id", Arc::new(Int64Array::from(products))),
        ("event_type", Arc::new(StringArray::from(types))),
        ("ts", Arc::new(TimestampMicrosecondArray::from(times))),
    ])
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), false))
        .collect();
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("demo columns match their schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.events, b.events);
        assert_eq!(a.products.num_rows(), 300);
        assert_eq!(a.users.num_rows(), 200);
        assert!(a.events.num_rows() > 3000, "{}", a.events.num_rows());
    }
}

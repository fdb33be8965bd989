#!/usr/bin/env python3
"""Write every file under fixtures/data/ from the records defined here.

The fixtures are checked in; this script is how they were made, so a format can be added or a record changed
in one place and every copy (JSON, JSONL, gzip, CSV, TSV, Parquet, save_to_disk) stays the same. Output is
byte-for-byte deterministic with the pinned pyarrow/datasets versions.

    python bin/make_fixtures.py            # rewrite fixtures/data/
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dataprep.records import from_messages, make_record  # noqa: E402

OUT = REPO / "fixtures" / "data"

# (instruction, input, output, category, extras): extras may hold "system" and "history".
ALPACA: list[tuple[str, str, str, str, dict]] = [
    ("Give three tips for staying focused while studying.", "",
     "1. Put your phone in another room.\n2. Work in 25-minute blocks with short breaks.\n"
     "3. Decide what you want to finish before you sit down.", "advice", {}),
    ("Translate the sentence into French.", "The library opens at nine.",
     "La bibliothèque ouvre à neuf heures.", "translation", {}),
    ("Write a Python function that returns the factorial of n.", "",
     "```python\ndef factorial(n: int) -> int:\n    result = 1\n    for k in range(2, n + 1):\n"
     "        result *= k\n    return result\n```", "code", {}),
    ("把下面的句子翻译成英文。", "今天的天气很好，我们去公园散步吧。",
     "The weather is lovely today, so let's take a walk in the park.", "translation",
     {"system": "你是一名专业的翻译助手。"}),
    ("解释什么是机器学习。", "",
     "机器学习是人工智能的一个分支：程序不靠人写好的规则，而是从数据中总结规律，再用这些规律对新数据做出预测或决策。",
     "explain", {}),
    ("Classify the sentiment of the review as positive or negative.",
     "The battery died after two hours and support never replied.", "negative", "classification", {}),
    ("Summarize the paragraph in one sentence.",
     "The city council met on Tuesday to discuss the new bike lanes. Several shop owners worried about "
     "losing parking, while cyclists said the lanes would make the main street safer. The council agreed "
     "to a six-month trial.",
     "The council approved a six-month trial of new bike lanes despite shop owners' parking concerns.",
     "summarization", {}),
    ("What is the capital of Australia?", "", "Canberra is the capital of Australia.", "qa", {}),
    ("Write a SQL query that lists customers who placed more than five orders.",
     "Tables: customers(id, name), orders(id, customer_id, created_at)",
     "SELECT c.id, c.name, COUNT(o.id) AS order_count\nFROM customers AS c\n"
     "JOIN orders AS o ON o.customer_id = c.id\nGROUP BY c.id, c.name\nHAVING COUNT(o.id) > 5;", "code", {}),
    ("Fix the bug in this JavaScript code.",
     "function sum(xs) {\n  let total;\n  for (const x of xs) total += x;\n  return total;\n}",
     "`total` starts as `undefined`, so every addition gives `NaN`. Initialise it to zero:\n\n"
     "```js\nfunction sum(xs) {\n  let total = 0;\n  for (const x of xs) total += x;\n  return total;\n}\n```",
     "code", {}),
    ("Why is the sky blue?", "",
     "Air molecules scatter short blue wavelengths of sunlight much more than red ones. "
     "That scattered blue light reaches our eyes from every direction of the sky.", "explain",
     {"system": "You are a concise assistant. Answer in at most two sentences."}),
    ("番茄炒蛋需要哪些材料？", "",
     "需要两个番茄、三个鸡蛋、少许盐和糖，以及一点食用油。喜欢的话可以再加些葱花。", "cooking",
     {"history": [["我想学做菜，从哪里开始比较好？", "可以先从简单的家常菜开始，比如番茄炒蛋或者清炒青菜。"]]}),
    ("Rewrite the sentence in the active voice.", "The report was written by the intern.",
     "The intern wrote the report.", "rewriting", {}),
    ("Write a haiku about autumn.", "",
     "Maple leaves let go\nthe river carries their red\npast the quiet mill", "creative", {}),
    ("Convert 68 degrees Fahrenheit to Celsius.", "", "68 °F is 20 °C, since (68 − 32) × 5/9 = 20.", "math", {}),
    ("列出三种常见的排序算法，并说明它们的平均时间复杂度。", "",
     "1. 快速排序：O(n log n)\n2. 归并排序：O(n log n)\n3. 冒泡排序：O(n²)", "code", {}),
    ("Write a regular expression that matches a US ZIP code.", "",
     "^\\d{5}(-\\d{4})?$ matches five digits, optionally followed by a hyphen and four more digits.",
     "code", {}),
    ("Explain the difference between a list and a tuple in Python.", "",
     "A list is mutable: you can append, remove or change items. A tuple is immutable once created, "
     "so it can be used as a dictionary key and signals that the values belong together.", "code", {}),
    ("那 2 的 20 次方呢？", "", "2 的 20 次方是 1024 × 1024 = 1048576。", "math",
     {"system": "你是一名耐心的数学老师。", "history": [["2 的 10 次方是多少？", "2 的 10 次方是 1024。"]]}),
    ("Sort the list in ascending order.", "[42, 7, 19, 3, 88]", "[3, 7, 19, 42, 88]", "math", {}),
    ("Write a shell command that counts the lines of all .py files under the current directory.", "",
     "find . -name '*.py' -print0 | xargs -0 wc -l", "code", {}),
    ("Give an antonym for the word.", "generous", "stingy", "vocabulary", {}),
    ("Extract all email addresses from the text.",
     "Write to ana@example.org, or reach the help desk at help@example.com.",
     "ana@example.org, help@example.com", "extraction", {}),
    ("用一句话描述春天。", "", "春天是冰雪消融、草木发芽、空气里都是花香的季节。", "creative", {}),
    ("Is there an audiobook version?", "",
     "Yes, there is an unabridged audiobook read by the author, about five and a half hours long.", "books",
     {"history": [["Can you recommend a book about building habits?",
                   "Atomic Habits by James Clear is a popular and practical choice."],
                  ["Is it long?", "Not really: it is about 320 pages."]]}),
    ("Write a pytest unit test for a function add(a, b) that returns the sum.", "",
     "```python\nfrom mymath import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
     "    assert add(-1, 1) == 0\n```", "code", {}),
    ("Explain what the HTTP status code 404 means.", "",
     "404 Not Found: the server is reachable, but it has nothing at the requested URL.", "explain", {}),
    ("Give the name and year of the first crewed Moon landing mission.", "",
     "{\"mission\": \"Apollo 11\", \"year\": 1969}", "qa",
     {"system": "You are a helpful assistant that always answers with a JSON object."}),
    ("Rewrite the message to sound more formal.", "Hey, can you send me that report asap?",
     "Could you please send me the report at your earliest convenience?", "rewriting", {}),
    ("计算下列表达式的值。", "(12 + 8) × 3 − 5", "(12 + 8) × 3 − 5 = 60 − 5 = 55", "math", {}),
    ("Name two renewable sources of energy.", "", "Solar power and wind power.", "qa", {}),
    ("Write a Rust function that reverses a string.", "",
     "```rust\nfn reverse(s: &str) -> String {\n    s.chars().rev().collect()\n}\n```", "code", {}),
    ("Identify the verb in the sentence.", "The children laughed loudly.", "laughed", "grammar", {}),
    ("Tell me a fun fact about octopuses.", "", "An octopus has three hearts and blue blood.", "qa", {}),
    ("Review this Python snippet.", "def avg(xs): return sum(xs) / len(xs)",
     "It raises ZeroDivisionError for an empty list. Decide what an empty input should mean, "
     "for example return None or raise a ValueError with a clear message.", "code",
     {"system": "You are a careful code reviewer."}),
    ("将下面的代码从 Python 改写为 JavaScript。", "squares = [x * x for x in range(5)]",
     "const squares = Array.from({ length: 5 }, (_, x) => x * x);", "code", {}),
    ("Mostly temples, and one day for food.", "",
     "Day 1: Kiyomizu-dera and the Higashiyama streets. Day 2: Fushimi Inari early, then Tofuku-ji. "
     "Day 3: Nishiki Market and a kaiseki dinner in Gion.", "travel",
     {"system": "You are a friendly travel planner.",
      "history": [["I have three days in Kyoto.", "Great! Do you prefer temples, food, or hiking?"]]}),
    ("What does the acronym CPU stand for?", "", "Central Processing Unit.", "qa", {}),
    ("Suggest a name for a bakery that sells only sourdough bread.", "", "The Patient Loaf", "creative", {}),
    ("Describe the water cycle in three steps.", "",
     "Water evaporates from seas and lakes, condenses into clouds, and falls back as rain or snow.", "explain",
     {"history": [["Can you help me with my science homework?", "Of course. What is the question?"]]}),
]

GET_WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]},
}
CONVERT_CURRENCY = {
    "name": "convert_currency",
    "description": "Convert an amount from one currency to another",
    "parameters": {"type": "object", "properties": {"amount": {"type": "number"}, "from": {"type": "string"},
                   "to": {"type": "string"}}, "required": ["amount", "from", "to"]},
}
SEARCH_BOOKS = {
    "name": "search_books",
    "description": "Search a library catalogue by title or author",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}


def _tools(*functions: dict) -> str:
    return json.dumps(list(functions), ensure_ascii=False)


def _call(name: str, **arguments: object) -> str:
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def _turns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": who, "value": text} for who, text in pairs]


SHAREGPT: list[dict] = [
    {"conversations": _turns(("human", "What is a prime number?"),
                             ("gpt", "A whole number greater than 1 whose only divisors are 1 and itself."))},
    {"conversations": _turns(("human", "Write a limerick about a cat."),
                             ("gpt", "A cat with a taste for the cream\nwould plot and would purr and would scheme;\n"
                                     "she'd wait by the door\nfor a drop on the floor,\nthen vanish as quick as a dream."),
                             ("human", "Now make it about a dog."),
                             ("gpt", "A dog who adored every ball\nwould bound down the length of the hall;\n"
                                     "he'd fetch it with pride,\nthen drop it outside,\nand wait for another to fall."))},
    {"system": "You are a patient Python tutor.",
     "conversations": _turns(("human", "How do I read a file line by line?"),
                             ("gpt", "Open it in a with block and loop over it:\n\n```python\n"
                                     "with open('notes.txt', encoding='utf-8') as f:\n    for line in f:\n"
                                     "        print(line.rstrip())\n```"),
                             ("human", "And if the file is huge?"),
                             ("gpt", "That loop already reads one line at a time, so memory stays small."))},
    {"conversations": _turns(("human", "北京有哪些值得去的博物馆？"),
                             ("gpt", "推荐故宫博物院、中国国家博物馆和首都博物馆。"),
                             ("human", "哪个适合带小孩？"),
                             ("gpt", "中国科学技术馆更适合小孩，里面有很多可以动手的展品。"))},
    {"conversations": _turns(("system", "Answer as a pirate."),
                             ("human", "How are you today?"),
                             ("gpt", "Arr, fair winds and a full belly, matey!"))},
    {"tools": _tools(GET_WEATHER),
     "conversations": _turns(("human", "What's the weather like in Lisbon right now?"),
                             ("function_call", _call("get_weather", city="Lisbon")),
                             ("observation", json.dumps({"city": "Lisbon", "temperature": 21, "condition": "sunny"})),
                             ("gpt", "It is sunny in Lisbon, 21 °C."))},
    {"tools": _tools(CONVERT_CURRENCY),
     "conversations": _turns(("human", "Hi! Can you help with a currency question?"),
                             ("gpt", "Sure, what would you like to convert?"),
                             ("human", "How much is 250 US dollars in euros?"),
                             ("function_call", _call("convert_currency", amount=250, **{"from": "USD", "to": "EUR"})),
                             ("observation", json.dumps({"converted_amount": 231.5, "currency": "EUR"})),
                             ("gpt", "250 US dollars is about 231.50 euros."),
                             ("human", "Thanks!"),
                             ("gpt", "You're welcome!"))},
    {"tools": _tools(GET_WEATHER),
     "conversations": _turns(("human", "比较一下上海和广州现在的气温。"),
                             ("function_call", json.dumps([{"name": "get_weather", "arguments": {"city": "上海"}},
                                                           {"name": "get_weather", "arguments": {"city": "广州"}}],
                                                          ensure_ascii=False)),
                             ("observation", json.dumps([{"city": "上海", "temperature": 18},
                                                         {"city": "广州", "temperature": 26}], ensure_ascii=False)),
                             ("gpt", "上海现在 18 °C，广州 26 °C，广州暖和 8 度。"))},
    {"tools": _tools(SEARCH_BOOKS, GET_WEATHER),
     "system": "You are a library assistant.",
     "conversations": _turns(("human", "Do you have anything by Ursula K. Le Guin?"),
                             ("function_call", _call("search_books", query="Ursula K. Le Guin")),
                             ("observation", json.dumps({"results": ["A Wizard of Earthsea", "The Dispossessed"]})),
                             ("gpt", "Yes: A Wizard of Earthsea and The Dispossessed are both in the catalogue."))},
    {"tools": _tools(GET_WEATHER),
     "conversations": _turns(("human", "Tell me a joke about programmers."),
                             ("gpt", "Why do programmers prefer dark mode? Because light attracts bugs."))},
    {"conversations": _turns(("human", "Explain recursion in one sentence."),
                             ("gpt", "Recursion is when a function solves a problem by calling itself on a smaller "
                                     "version of the same problem until it reaches a case it can answer directly."))},
    {"conversations": _turns(("human", "用 Python 写一个判断回文字符串的函数。"),
                             ("gpt", "```python\ndef is_palindrome(s: str) -> bool:\n    return s == s[::-1]\n```"),
                             ("human", "忽略大小写和空格呢？"),
                             ("gpt", "```python\ndef is_palindrome(s: str) -> bool:\n"
                                     "    t = ''.join(s.split()).lower()\n    return t == t[::-1]\n```"))},
    {"system": "You are a fitness coach.",
     "conversations": _turns(("human", "I can only train twice a week. Is that enough?"),
                             ("gpt", "Yes. Two full-body sessions a week build strength well if you stay consistent."))},
    {"conversations": _turns(("human", "What's 15% of 80?"), ("gpt", "15% of 80 is 12."),
                             ("human", "And 15% of 120?"), ("gpt", "18."),
                             ("human", "What's the pattern?"),
                             ("gpt", "Each time the number grows by 40, 15% of it grows by 6."))},
    {"conversations": _turns(("human", "Give me a synonym for 'happy'."), ("gpt", "Cheerful."))},
    {"conversations": _turns(("human", "请把“知识就是力量”翻译成英文。"), ("gpt", "Knowledge is power."))},
    {"conversations": _turns(("human", "How do I undo the last git commit but keep the changes?"),
                             ("gpt", "Run `git reset --soft HEAD~1`: the commit is removed and its changes stay staged."))},
    {"conversations": _turns(("human", "Name a fruit that is high in potassium."),
                             ("gpt", "Bananas are a well-known source of potassium."),
                             ("human", "Any others?"),
                             ("gpt", "Avocados, apricots and oranges are good sources too."))},
    {"system": "你是一名历史老师。",
     "conversations": _turns(("human", "丝绸之路是什么？"),
                             ("gpt", "丝绸之路是古代连接中国与中亚、西亚和欧洲的贸易路线网络，因丝绸贸易而得名。"))},
    {"conversations": _turns(("human", "Write a one-line SQL statement that deletes rows older than 30 days from logs."),
                             ("gpt", "DELETE FROM logs WHERE created_at < NOW() - INTERVAL '30 days';"))},
]


def _openai_tool(function: dict) -> dict:
    return {"type": "function", "function": function}


def _tool_call(call_id: str, name: str, **arguments: object) -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _chat(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


MESSAGES: list[dict] = [
    {"messages": _chat(("user", "What is the boiling point of water at sea level?"),
                       ("assistant", "100 °C, or 212 °F."))},
    {"messages": _chat(("system", "You are a terse assistant."),
                       ("user", "Capital of Canada?"), ("assistant", "Ottawa."))},
    {"messages": _chat(("user", "Suggest a name for a grey kitten."), ("assistant", "How about Pebble?"),
                       ("user", "Something longer?"), ("assistant", "Sir Reginald Fluffington."))},
    {"messages": _chat(("user", "用一句话解释什么是区块链。"),
                       ("assistant", "区块链是一种由多方共同维护、按时间顺序链接且难以篡改的数据记录方式。"))},
    {"messages": _chat(("system", "You write Python 3 code only."),
                       ("user", "Read a JSON file into a dict."),
                       ("assistant", "```python\nimport json\n\nwith open('data.json', encoding='utf-8') as f:\n"
                                     "    data = json.load(f)\n```"))},
    {"tools": [_openai_tool(GET_WEATHER)],
     "messages": [{"role": "user", "content": "Do I need an umbrella in Dublin today?"},
                  {"role": "assistant", "content": None,
                   "tool_calls": [_tool_call("call_1", "get_weather", city="Dublin")]},
                  {"role": "tool", "tool_call_id": "call_1",
                   "content": json.dumps({"city": "Dublin", "condition": "rain", "temperature": 12})},
                  {"role": "assistant", "content": "Yes, it's raining in Dublin (12 °C), so take an umbrella."}]},
    {"tools": [_openai_tool(CONVERT_CURRENCY)],
     "messages": [{"role": "system", "content": "You are a travel assistant."},
                  {"role": "user", "content": "Convert 5000 yen to pounds."},
                  {"role": "assistant", "content": None,
                   "tool_calls": [_tool_call("call_a", "convert_currency", amount=5000, **{"from": "JPY", "to": "GBP"})]},
                  {"role": "tool", "tool_call_id": "call_a",
                   "content": json.dumps({"converted_amount": 26.4, "currency": "GBP"})},
                  {"role": "assistant", "content": "5000 yen is about £26.40."}]},
    {"tools": [_openai_tool(GET_WEATHER)],
     "messages": [{"role": "user", "content": "Weather in Oslo and Rome, please."},
                  {"role": "assistant", "content": None,
                   "tool_calls": [_tool_call("call_o", "get_weather", city="Oslo"),
                                  _tool_call("call_r", "get_weather", city="Rome")]},
                  {"role": "tool", "tool_call_id": "call_o",
                   "content": json.dumps([{"city": "Oslo", "temperature": -3}, {"city": "Rome", "temperature": 15}])},
                  {"role": "assistant", "content": "Oslo is at -3 °C and Rome at 15 °C."}]},
    {"tools": [_openai_tool(SEARCH_BOOKS)],
     "messages": [{"role": "user", "content": "帮我找一本关于宋朝历史的书。"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [_tool_call("call_s", "search_books", query="宋朝 历史")]},
                  {"role": "tool", "tool_call_id": "call_s", "content": json.dumps({"results": ["宋朝简史"]},
                                                                                ensure_ascii=False)},
                  {"role": "assistant", "content": "馆里有一本《宋朝简史》，适合入门阅读。"},
                  {"role": "user", "content": "谢谢！"},
                  {"role": "assistant", "content": "不客气，祝你阅读愉快！"}]},
    {"messages": _chat(("user", "Is 91 a prime number?"), ("assistant", "No, 91 = 7 × 13."))},
    {"messages": _chat(("user", "What does `git stash` do?"),
                       ("assistant", "It shelves your uncommitted changes so you get a clean working tree; "
                                     "`git stash pop` brings them back."))},
    {"messages": _chat(("system", "你是一名营养师。"), ("user", "早餐吃什么比较健康？"),
                       ("assistant", "燕麦、鸡蛋和一份水果是均衡又方便的选择。"))},
    {"messages": _chat(("user", "Translate 'good night' into Spanish."), ("assistant", "Buenas noches."),
                       ("user", "And into Italian?"), ("assistant", "Buona notte."),
                       ("user", "German?"), ("assistant", "Gute Nacht."))},
    {"messages": _chat(("user", "Write a CSS rule that centres a div horizontally."),
                       ("assistant", "```css\n.box {\n  margin: 0 auto;\n  width: 50%;\n}\n```"))},
    {"messages": _chat(("user", "Give me a word that rhymes with 'light'."), ("assistant", "Night."))},
    {"messages": _chat(("system", "Reply in British English."), ("user", "What colour is a ripe lemon?"),
                       ("assistant", "A ripe lemon is a bright yellow colour."))},
    {"messages": _chat(("user", "How many minutes are in a day?"), ("assistant", "1,440 minutes."))},
    {"messages": _chat(("user", "Explain Big O notation briefly."),
                       ("assistant", "Big O describes how the running time or memory of an algorithm grows as the "
                                     "input grows, ignoring constant factors."))},
    {"messages": _chat(("user", "什么是光合作用？"),
                       ("assistant", "光合作用是植物利用光能，把二氧化碳和水转化为葡萄糖并释放氧气的过程。"))},
    {"messages": _chat(("user", "Recommend a board game for four players."),
                       ("assistant", "Ticket to Ride: easy to learn, and it plays well with four."))},
]


def canonical_records() -> list[dict]:
    """Canonical records as normalize writes them: built with the library, so ids and key order are real."""
    records = [
        make_record(prompt="Name the largest planet in the Solar System.", response="Jupiter.",
                    meta={"source": "fixture", "category": "qa"}),
        make_record(prompt="Translate into German.", query="Thank you very much.", response="Vielen Dank.",
                    meta={"category": "translation"}),
        make_record(prefix="You are a helpful assistant.", prompt="What is 7 × 8?", response="56."),
        make_record(prompt="写一首关于月亮的两行诗。", response="月光落在窗台上，\n像一封没有寄出的信。",
                    meta={"category": "creative"}),
        make_record(prompt="And in Python?", response="```python\nprint('hello')\n```",
                    history=[["How do I print hello in JavaScript?", "console.log('hello');"]]),
        make_record(prompt="Summarize the text.", query="Cats sleep up to sixteen hours a day to save energy.",
                    response="Cats sleep a lot to conserve energy."),
        make_record(prompt="Fix the typo.", query="Teh quick brown fox.", response="The quick brown fox.",
                    id="fixture-0007"),
        make_record(prefix="你是一名数学老师。", prompt="那 3 的 4 次方呢？", response="3 的 4 次方是 81。",
                    history=[["3 的 2 次方是多少？", "3 的 2 次方是 9。"], ["3 的 3 次方呢？", "27。"]]),
        make_record(prompt="List two primary colours.", response="Red and blue.", meta={"difficulty": 1}),
        make_record(prompt="Reverse the list.", query="[1, 2, 3]", response="[3, 2, 1]"),
        make_record(prompt="What is HTML?", response="HyperText Markup Language, the structure of web pages."),
        make_record(prompt="Write a Go function that adds two ints.",
                    response="```go\nfunc add(a, b int) int {\n\treturn a + b\n}\n```", meta={"category": "code"}),
        make_record(prompt="Is the statement true? Water boils at 50 °C at sea level.", response="False."),
        make_record(prompt="给这段话起个标题。", query="小明每天早上六点起床跑步，坚持了三年。",
                    response="坚持的力量"),
        make_record(prompt="What's a good name for a goldfish?", response="Bubbles."),
    ]
    for i, row in enumerate(SHAREGPT[5:9]):
        messages = [{"role": {"human": "user", "gpt": "assistant", "function_call": "function_call",
                              "observation": "observation"}[t["from"]], "content": t["value"]}
                    for t in row["conversations"]]
        if row.get("system"):
            messages.insert(0, {"role": "system", "content": row["system"]})
        records.append(from_messages(messages, tools=row["tools"], meta={"fixture_row": 5 + i}))
    records.append(from_messages(MESSAGES[2]["messages"]))
    return records


def alpaca_records() -> list[dict]:
    out = []
    for instruction, input_, output, category, extras in ALPACA:
        record: dict = {"instruction": instruction, "input": input_, "output": output}
        if "system" in extras:
            record["system"] = extras["system"]
        if "history" in extras:
            record["history"] = extras["history"]
        record["category"] = category
        out.append(record)
    return out


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def jsonl_text(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_delimited(path: Path, records: list[dict], delimiter: str) -> None:
    columns = ["instruction", "input", "output", "system", "category"]
    rows = [columns] + [[record.get(c, "") for c in columns] for record in records]
    if delimiter == "\t":  # no quoting at all, as GLUE writes TSV: a quote character is just a character
        path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
        return
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def flat_enough_for_tsv(record: dict) -> bool:
    """TSV has no quoting: a field may hold neither a tab nor a line break."""
    return "history" not in record and not any(
        isinstance(v, str) and ("\t" in v or "\n" in v or "\r" in v) for v in record.values()
    )


def write_parquet(path: Path, records: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string()),
                        ("system", pa.string()), ("history", pa.list_(pa.list_(pa.string()))),
                        ("category", pa.string())])
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table, path)


def write_saved(path: Path, records: list[dict]) -> None:
    from datasets import Dataset, Features, Sequence, Value

    features = Features({"instruction": Value("string"), "input": Value("string"), "output": Value("string"),
                         "system": Value("string"), "history": Sequence(Sequence(Value("string"))),
                         "category": Value("string")})
    columns = {name: [r.get(name) for r in records] for name in features}
    if path.exists():
        shutil.rmtree(path)
    Dataset.from_dict(columns, features=features).save_to_disk(str(path))


# Sentence pairs in GLUE MRPC's layout. Each fact type has two phrasings of the same event; a positive pair is
# one fact in both phrasings, a negative pair joins two facts of different types and different participants.
FIRMS = ["Northwind", "Contoso", "Fabrikam", "Globex", "Initech", "Blue Harbor", "Redwood Labs", "Alder Bank",
         "Kestrel Air", "Lumen Motors", "Saltmarsh Foods", "Crane Media"]
PEOPLE = ["Maria Lopez", "James Chen", "Aisha Khan", "Tom Becker", "Lena Novak", "Omar Haddad", "Priya Raman",
          "Daniel Okafor", "Sofia Rossi", "Ken Watanabe", "Ruth Adler", "Pavel Sorokin"]
CITIES = ["Denver", "Lyon", "Osaka", "Nairobi", "Toronto", "Lima", "Oslo", "Perth", "Seoul", "Madrid",
          "Halifax", "Porto"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
QUARTERS = ["first", "second", "third", "fourth"]
NUMBER_RANGE = {"profit": (2, 60), "ceo": (1, 9), "rain": (3, 120), "court": (2, 25), "deal": (10, 900)}

PHRASINGS = {
    "profit": ("{firm} said its profit rose {n} percent in the {quarter} quarter .",
               "Profit at {firm} climbed {n} percent during the {quarter} quarter , the company said ."),
    "ceo": ("{firm} named {person} as its new chief executive on {day} .",
            "On {day} , {person} was appointed chief executive of {firm} ."),
    "rain": ("Heavy rain forced officials in {city} to close {n} schools on {day} .",
             "{n} schools in {city} were shut on {day} after heavy rain , officials said ."),
    "court": ("A court in {city} sentenced {person} to {n} years in prison on {day} .",
              "{person} was given a {n}-year prison sentence by a {city} court on {day} ."),
    "deal": ("{firm} agreed to buy a factory in {city} for {n} million dollars .",
             "A factory in {city} will be sold to {firm} in a deal worth {n} million dollars ."),
}


def _fact(rng: random.Random, kind: str) -> dict:
    return {"kind": kind, "firm": rng.choice(FIRMS), "person": rng.choice(PEOPLE), "city": rng.choice(CITIES),
            "day": rng.choice(DAYS), "quarter": rng.choice(QUARTERS), "n": rng.randint(*NUMBER_RANGE[kind])}


def _say(fact: dict, form: int) -> str:
    return PHRASINGS[fact["kind"]][form].format(**fact)


def pair_rows(count: int = 240, seed: int = 20240523) -> list[list[str]]:
    rng = random.Random(seed)
    kinds = sorted(PHRASINGS)
    rows = []
    next_id = 1_000_000
    for i in range(count):
        first = _fact(rng, rng.choice(kinds))
        forms = [0, 1] if rng.random() < 0.5 else [1, 0]
        if i % 2 == 0:
            quality, second = "1", first
        else:
            other = rng.choice([k for k in kinds if k != first["kind"]])
            second = _fact(rng, other)
            while second["firm"] == first["firm"] or second["person"] == first["person"] \
                    or second["city"] == first["city"]:
                second = _fact(rng, other)
            quality = "0"
        next_id += rng.randint(3, 400)
        id1 = next_id
        next_id += rng.randint(3, 400)
        rows.append([quality, str(id1), str(next_id), _say(first, forms[0]), _say(second, forms[1])])
    rng.shuffle(rows)
    return rows


def write_pairs(path: Path) -> None:
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    lines += ["\t".join(row) for row in pair_rows()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_broken(folder: Path, alpaca: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    good = [json.dumps({"instruction": r["instruction"], "input": r["input"], "output": r["output"]},
                       ensure_ascii=False) for r in alpaca[:6]]
    (folder / "malformed.jsonl").write_text(
        "\n".join(good[:3] + ['{"instruction": "Name a colour.", "input": "", "output": "Green."'] + good[3:]) + "\n",
        encoding="utf-8")
    write_json(folder / "wrong_types.json", [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": 5},
        {"instruction": "Say hello.", "input": "", "output": "Hello!", "history": "none"},
        {"instruction": "Greet twice.", "input": "", "output": "Hi again.", "history": [["Hi", 42]]},
        {"instruction": ["Pick", "one"], "input": None, "output": "Done."},
    ])
    write_json(folder / "missing_fields.json", [
        {"instruction": "Name a mammal that can fly.", "input": "", "output": "The bat."},
        {"instruction": "What is 2 + 2?", "input": ""},
        {"input": "no instruction here", "output": "An answer without a question."},
    ])
    lines = [line.encode("utf-8") for line in good[:4]]
    lines.insert(2, b'{"instruction": "Caf\xe9 menu", "input": "", "output": "Latin-1 bytes, not UTF-8."}')
    (folder / "invalid_utf8.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (folder / "empty.jsonl").write_bytes(b"")
    write_json(folder / "ends_on_user.json", [
        {"conversations": _turns(("human", "Hello!"), ("gpt", "Hi, how can I help?"))},
        {"conversations": _turns(("human", "What time is it in Tokyo?"), ("gpt", "I can't check the clock."),
                                 ("human", "Then guess."))},
    ])
    write_json(folder / "not_alternating.json", [
        {"conversations": _turns(("human", "Tell me a fact."), ("gpt", "Honey never spoils."))},
        {"conversations": _turns(("human", "First question."), ("human", "Second question."),
                                 ("gpt", "One answer for both."))},
    ])
    complete = json.dumps(alpaca[:3], ensure_ascii=False, indent=2)
    (folder / "truncated.json").write_text(complete[: complete.rindex('"output"') + 14], encoding="utf-8")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    alpaca = alpaca_records()
    write_json(OUT / "alpaca.json", alpaca)
    (OUT / "alpaca.jsonl").write_text(jsonl_text(alpaca), encoding="utf-8")
    with open(OUT / "alpaca.jsonl.gz", "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(jsonl_text(alpaca).encode("utf-8"))
    write_delimited(OUT / "alpaca.csv", [r for r in alpaca if "history" not in r], ",")
    write_delimited(OUT / "alpaca.tsv", [r for r in alpaca if flat_enough_for_tsv(r)], "\t")
    write_parquet(OUT / "alpaca.parquet", alpaca)
    write_saved(OUT / "alpaca_saved", alpaca)
    write_json(OUT / "sharegpt.json", SHAREGPT)
    (OUT / "messages.jsonl").write_text(jsonl_text(MESSAGES), encoding="utf-8")
    (OUT / "canonical.jsonl").write_text(jsonl_text(canonical_records()), encoding="utf-8")
    write_pairs(OUT / "pairs.tsv")
    write_broken(OUT / "broken", alpaca)


if __name__ == "__main__":
    main()

"""The rules about text that several stages share, so none of them imports another stage for them.

- `patterns`: what a letter, a URL, code, math and translate's placeholder look like;
- `defects`: what a model's text must not hold (HTML tags and literal escapes in prose, loops), which
  translate's QA turns down and the audit flags;
- `scripts`: which script a language is written in, and how much of a text is in it;
- `language_id`: lingua, the one language detector (restricted to the languages in play), asked
  only where the script can't tell;
- `languages`: the language codes hala knows, their names, and the checks of a language pair;
- `prompts`: the paper's translator prompt, and the field check of any prompt template;
- `arabic`: Arabic text in its comparison form (marks, letter variants, digits, punctuation
  folded), for decontamination and deduplication;
- `filters`: the one shape of a filter (a name, and verdicts for a batch: pass or (name, reason)),
  which translate's QA, the pair filters and the judge's script gate share.

translate, pairs, judge and the audit stand on this package; it stands on nothing of theirs.
"""
